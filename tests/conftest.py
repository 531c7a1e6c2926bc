"""Suite-wide settings: Hypothesis profiles.

``ci`` (the default) is derandomized so a run on a clean clone is reproducible; ``deep`` searches
harder with fresh randomness: ``HYPOTHESIS_PROFILE=deep make pytest``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "deep", max_examples=2_000, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

pytest_plugins = ["pytester", "tests.confinement"]
