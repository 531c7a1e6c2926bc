"""``python -m sotto.cli``: the same as the ``sotto`` command."""

from sotto.cli.app import main

main()
