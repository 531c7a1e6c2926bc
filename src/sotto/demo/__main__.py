"""``python -m sotto.demo``: see :mod:`sotto.demo`."""

import sys

from sotto.demo import main

sys.exit(main())
