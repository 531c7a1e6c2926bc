"""Drive the decoder fuzz targets with atheris (libFuzzer), one process per target, one at a time.

::

    python -m tests.fuzz.run --runs 1000000            # every target, 10^6 inputs each (make fuzz)
    python -m tests.fuzz.run --seconds 1               # every target for about a second (make fuzz-smoke)
    python -m tests.fuzz.run --runs 100000 content     # some targets
    python -m tests.fuzz.run --list

Each target starts from its committed seeds (``tests/fuzz/corpus/<target>/``, only read) and
keeps what it learns in ``build/fuzz/corpus/<target>/`` (git-ignored). An input that raises an
exception its decoder's contract does not allow, or takes more CPU time than the target's
``slow_seconds`` (1 s for every decoder), is a finding: it is saved under
``build/fuzz/findings/<target>/`` and fuzzing goes on, so one run counts every distinct
finding (by exception type and the line that raised it, or "slow input"). One line per
target reports inputs run, time, exec/s, findings and the slowest input; the exit status is 1
if any target found anything (or failed to run).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "fuzz" / "corpus"
WORK = ROOT / "build" / "fuzz"
_STATS_ENV = "SOTTO_FUZZ_STATS"
ALL = "all"
"""The pseudo-target that fuzzes every target in one process, its first byte picking the target."""
MAX_LEN = 8192
"""libFuzzer's input size limit by default: larger inputs cost more per run than they find."""
_DONE = re.compile(r"Done (\d+) runs in (\d+) second")


def _signature(exc: BaseException) -> str:
    """Exception type and the innermost frame inside Sotto (else the innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/sotto/" in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return f"{type(exc).__name__} at {where}"


def _child(name: str, libfuzzer_args: list[str]) -> None:
    """Fuzz one target in this process (atheris can run once per process)."""
    import atheris  # type: ignore[import-untyped]

    with atheris.instrument_imports(include=["sotto"]):
        from tests.fuzz import targets

    every = list(targets.TARGETS.values())

    def pick(data: bytes) -> targets.Target:
        if name != ALL:
            return targets.TARGETS[name]
        return every[data[0] % len(every)] if data else every[0]

    stats_path = Path(os.environ[_STATS_ENV])
    findings_dir = WORK / "findings" / name
    stats: dict[str, Any] = {"inputs": 0, "slowest_seconds": 0.0, "findings": {}, "started": 0.0}

    def write_stats() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(stats_path)

    def save(kind: str, data: bytes) -> str:
        findings_dir.mkdir(parents=True, exist_ok=True)
        path = findings_dir / f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
        path.write_bytes(data)
        return str(path.relative_to(ROOT))

    def one_input(data: bytes) -> None:
        started = time.process_time()  # CPU time: other jobs on the machine do not make an input slow
        finding = None
        target = pick(data)
        try:
            targets.check(target, data[1:] if name == ALL else data)
        except targets.ContractViolation as violation:
            finding = f"{violation.target}: {_signature(violation.error)}"
        elapsed = time.process_time() - started
        stats["inputs"] += 1
        if not stats["started"]:
            stats["started"] = time.time()
        changed = elapsed > stats["slowest_seconds"]
        if changed:
            stats["slowest_seconds"] = elapsed
            stats["slowest_size"] = len(data)
            stats["slowest_target"] = target.name
        kind = "crash"
        if elapsed > target.slow_seconds and finding is None:
            kind, finding = "slow", f"{target.name}: slow input"
        if finding is not None:
            seen = stats["findings"].setdefault(finding, {"count": 0, "example": None, "what": finding})
            seen["count"] += 1
            if seen["example"] is None:
                seen["example"] = save(kind, data)
            changed = True
        if changed:  # rare after the first inputs; libFuzzer exits without running Python's atexit
            write_stats()

    write_stats()
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _all_seeds(names: list[str]) -> Path:
    """The seeds of every target in one folder, each behind the byte that picks its target."""
    folder = WORK / "seeds-all"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    for index, name in enumerate(names):
        for seed in sorted((SEEDS / name).iterdir()):
            (folder / f"{name}-{seed.name}").write_bytes(bytes((index,)) + seed.read_bytes())
    return folder


def _fuzz(  # noqa: PLR0917
    name: str, runs: int | None, seconds: float | None, seed: int | None, seeds: Path, max_len: int
) -> tuple[str, bool]:
    """Run one target in a child process; return its report line and whether it is clean."""
    corpus = WORK / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    stats_path = WORK / f"{name}.stats.json"
    stats_path.unlink(missing_ok=True)
    args = [
        f"-max_len={max_len}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=0",
        f"-artifact_prefix={WORK}/{name}-",
    ]
    if runs is not None:
        args.append(f"-runs={runs}")
    if seconds is not None:
        args.append(f"-max_total_time={max(1, round(seconds))}")
    if seed is not None:
        args.append(f"-seed={seed}")
    args += [str(corpus), str(seeds)]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--", *args],
        cwd=ROOT,
        env={**os.environ, _STATS_ENV: str(stats_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    ended = time.time()
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        stats = {"inputs": 0, "slowest_seconds": 0.0, "findings": {}, "started": 0.0}
    done = _DONE.search(result.stderr)  # libFuzzer's own count: "Done 1000000 runs in 212 second(s)"
    inputs = int(done.group(1)) if done else stats["inputs"]
    fuzz_seconds = ended - stats["started"] if stats["started"] else wall
    found = stats["findings"]
    rate = inputs / max(fuzz_seconds, 1e-3)
    line = (
        f"{name:34} inputs {inputs:>9,}  time {fuzz_seconds:7.1f} s  exec/s {rate:8,.0f}  "
        f"findings {sum(f['count'] for f in found.values()):>5} ({len(found)} distinct)  "
        f"slowest {stats['slowest_seconds'] * 1000:6.1f} ms CPU ({stats.get('slowest_size', 0)} B"
        + (f", {stats.get('slowest_target')})" if name == ALL else ")")
    )
    for finding in found.values():
        line += f"\n    {finding['what']}: {finding['count']} inputs, e.g. {finding['example']}"
    ok = result.returncode == 0 and not found
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        line += f"\n    libFuzzer exited with {result.returncode}:\n{tail}"
    return line, ok


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        rest = argv[2:]
        _child(argv[1], rest[1:] if rest[:1] == ["--"] else rest)
        return 0
    from tests.fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("--runs", type=int, help="inputs per target (libFuzzer -runs)")
    parser.add_argument("--seconds", type=float, help="time limit per target (libFuzzer -max_total_time)")
    parser.add_argument("--max-len", type=int, default=MAX_LEN, help=f"largest input (default {MAX_LEN})")
    parser.add_argument("--seed", type=int, help="libFuzzer's -seed, for a repeatable run (default: random)")
    parser.add_argument("--list", action="store_true", help="list the targets and what each fuzzes")
    parser.add_argument(
        "--skip-without-atheris",
        action="store_true",
        help="succeed with a note where atheris is not installed (its wheels are Linux x86-64 only)",
    )
    parser.add_argument(
        "--together",
        action="store_true",
        help="fuzz the targets in one process (the first byte of an input picks the target): one start-up",
    )
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:34} {target.doc.splitlines()[0]}")
        return 0
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)} (see --list)")
    if importlib.util.find_spec("atheris") is None:
        note = "atheris is not installed here (pyproject installs it on Linux x86-64, CPython 3.11-3.13)"
        print(f"fuzz: {note}; the corpus replay in tests/fuzz still runs under pytest")
        return 0 if args.skip_without_atheris else 2
    if args.runs is None and args.seconds is None:
        args.runs = 1_000_000
    limits = [f"{args.runs:,} inputs"] if args.runs else []
    limits += [f"at most {args.seconds:g} s"] if args.seconds else []
    how = "together in one process" if args.together else "each"
    print(f"fuzzing {len(names)} targets, {' and '.join(limits)} {how}", flush=True)
    started = time.monotonic()
    clean = True
    if args.together:
        if names != list(TARGETS):
            parser.error("--together fuzzes every target")
        line, clean = _fuzz(ALL, args.runs, args.seconds, args.seed, _all_seeds(names), args.max_len)
        print(line, flush=True)
    for name in [] if args.together else names:
        line, ok = _fuzz(name, args.runs, args.seconds, args.seed, SEEDS / name, args.max_len)
        clean &= ok
        print(line, flush=True)
    print(f"{len(names)} targets in {time.monotonic() - started:.1f} s: {'clean' if clean else 'FINDINGS'}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
