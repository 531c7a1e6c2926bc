"""Build Sotto with its per-message core compiled by mypyc, beside the source, and print where.

    python bench/compiled.py          # build (or reuse) and print the directory for PYTHONPATH

The modules compiled are pyproject's ``[tool.sotto.mypyc] modules``, the same list that
``SOTTO_MYPYC=1 pip install --no-build-isolation .`` compiles (setup.py). The build is a copy of
``src/sotto`` with those modules turned into extension modules, under
``build/mypyc/<hash of the sources, the list, mypy and Python>/src``; the source tree itself is
never touched, so an edited module can never hide behind a stale compiled one. Putting the
printed directory first on ``PYTHONPATH`` runs Sotto with the compiled core: the protocol
benchmark does, and ``make test`` runs the protocol, crypto and interop tests that way too.

Needs a C compiler and Python's headers; without them :class:`CompileUnavailableError` says
why, and the pure-Python package is what runs. Exit status: 0 built, 1 the build failed, 2 no
C compiler here (``make test`` then says so and runs the plain-Python tests only).
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build" / "mypyc"
_DONE = ".built"


class CompileUnavailableError(RuntimeError):
    """mypyc could not build the compiled core here (no compiler, no headers, or a mypyc error)."""


def compiled_modules(root: pathlib.Path = ROOT) -> list[str]:
    """The source files compiled, relative to ``src`` (from pyproject's ``[tool.sotto.mypyc]``)."""
    with (root / "pyproject.toml").open("rb") as f:
        modules: list[str] = tomllib.load(f)["tool"]["sotto"]["mypyc"]["modules"]
    return modules


def _fingerprint(root: pathlib.Path, modules: list[str]) -> str:
    import mypy.version  # noqa: PLC0415 (only needed to build)

    digest = hashlib.sha256()
    digest.update(f"{sys.version}\0{mypy.version.__version__}\0{modules}\0".encode())
    for path in sorted((root / "src" / "sotto").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build(root: pathlib.Path = ROOT, *, log: bool = True) -> pathlib.Path:
    """The ``src`` directory of a compiled build of the current sources, building it if needed."""
    modules = compiled_modules(root)
    target = BUILD_DIR / _fingerprint(root, modules)
    if (target / _DONE).exists():
        return target / "src"
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(
        root / "src" / "sotto",
        staging / "src" / "sotto",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"),
    )
    if log:
        print(f"compiling {len(modules)} modules with mypyc into {target} ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "mypyc", *modules],
            cwd=staging / "src",
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CompileUnavailableError(f"mypyc could not run: {exc}") from None
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise CompileUnavailableError(f"mypyc failed (exit {proc.returncode}):\n{tail}")
    shutil.rmtree(staging / "src" / "build", ignore_errors=True)  # mypyc's intermediate C files
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    (target / _DONE).touch()
    return target / "src"


def has_compiler() -> bool:
    """Whether the C compiler Python was built with (what mypyc calls) is on this machine."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(compiler) is not None


def main() -> int:
    """Print the build's ``src`` directory; exit 2 without a C compiler, 1 if the build fails."""
    if not has_compiler():
        print("compiled build unavailable: no C compiler on this machine", file=sys.stderr)
        return 2
    try:
        print(build())
    except CompileUnavailableError as exc:
        print(f"compiled build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
