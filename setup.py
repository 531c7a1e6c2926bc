"""Build hook: with ``SOTTO_MYPYC=1``, compile the per-message core with mypyc (README, "Speed").

    SOTTO_MYPYC=1 pip install --no-build-isolation .    # needs mypy, a C compiler, Python's headers

The modules are pyproject's ``[tool.sotto.mypyc]`` list; everything else, and every module
when the variable is unset, installs as plain Python. An editable install (``pip install -e``,
what ``make setup`` does) is never compiled: an edited module must not hide behind a stale
compiled copy. ``bench/compiled.py`` builds the compiled form beside the source instead.
"""

import os
import sys
import tomllib

from setuptools import setup


def _ext_modules() -> list[object]:
    if os.environ.get("SOTTO_MYPYC") != "1":
        return []
    if "editable_wheel" in sys.argv:
        print("SOTTO_MYPYC=1 is ignored for an editable install", file=sys.stderr)
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (a build-time dependency only)

    with open("pyproject.toml", "rb") as f:
        modules = tomllib.load(f)["tool"]["sotto"]["mypyc"]["modules"]
    return list(mypycify([os.path.join("src", m) for m in modules], opt_level="3"))


setup(ext_modules=_ext_modules())
