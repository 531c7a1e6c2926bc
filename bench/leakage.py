"""The full-size metadata-leakage benchmark: every design side by side, at the sizes given.

    python bench/leakage.py [--people 1000] [--days 1] [--cadence-people 100] [--cadence-days 2]
                            [--design NAME ...] [--jobs N] [--out bench/results/leakage] [--publish]
    python bench/leakage.py --study DIR=DESIGN [--study DIR=DESIGN ...] [--design NAME ...]

Runs :func:`sotto.audit.leakage.run.run` (the same code as ``sotto audit leakage``: real clients
on the real relay, the attacks on the view the relay recorded) and writes ``leakage.md``,
``leakage.json`` and ``accuracy.png`` to ``--out``. ``--study DIR=DESIGN`` scores a study that
``python -m sotto.audit.sim.study ... --out DIR`` already ran (its ``view.jsonl`` and
``truth.json``) as the named design, so the largest studies can run in processes of their own;
the modelled baselines are then computed from the ``sotto-default`` study's truth, and designs
named with ``--design`` run here at the ``--people``/``--cadence-people`` sizes. Every study's
wall and CPU time is printed. The measured designs' studies run in up to ``--jobs`` processes at
once (default: the cores this process may use), one study per process, each process's peak
resident memory printed with its progress. ``--publish`` copies the report to
``docs/metadata-report.md`` and the chart to ``docs/metadata-accuracy.png`` (``--publish STEM``:
``docs/STEM-report.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import time

from sotto.audit.leakage import designs, report
from sotto.audit.leakage.run import Config, DesignResult, measure, model, run
from sotto.audit.sim.truth import Truth
from sotto.server.observer import read_view

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _log(started: float, line: str) -> None:
    print(f"[{time.perf_counter() - started:7.0f} s] {line}", file=sys.stderr, flush=True)


def _timing(directory: pathlib.Path) -> tuple[float, float]:
    """Wall and CPU seconds a study printed in ``DIR.log`` or ``DIR/study.log`` (0 if absent)."""
    for log in (directory.with_suffix(".log"), directory / "study.log"):
        if log.exists():
            found = re.search(r"done: wall ([0-9.]+) s, cpu ([0-9.]+) s", log.read_text(encoding="utf-8"))
            if found:
                return float(found.group(1)), float(found.group(2))
    return 0.0, 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--people", type=int, default=1_000)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--cadence-people", type=int, default=100)
    parser.add_argument("--cadence-days", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=int, default=300)
    parser.add_argument("--design", action="append", help="only these designs (repeatable)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="studies run at once, each in a process of its own (default: the usable cores)",
    )
    parser.add_argument("--study", action="append", default=[], help="DIR=DESIGN: score a study run already")
    parser.add_argument(
        "--reuse", action="append", default=[], type=pathlib.Path, help="designs of an earlier leakage.json"
    )
    parser.add_argument("--no-hours", action="store_true", help="skip hours to identify")
    parser.add_argument(
        "--no-shuffle", action="store_true", help="skip the negative control of --study views"
    )
    parser.add_argument(
        "--cuts", type=int, default=12, help="cuts of a --study view for messages to identify"
    )
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "leakage")
    parser.add_argument(
        "--publish", nargs="?", const="metadata", help="copy the report and chart into docs/STEM-report.md"
    )
    parser.add_argument("--title", default="Metadata leakage: measured on the real relay")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: list[DesignResult] = []
    default_truth: Truth | None = None
    sizes: list[str] = []
    for path in args.reuse:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        results += [DesignResult.from_json(d) for d in earlier["designs"]]
        sizes += earlier.get("sizes", [])
    for spec in args.study:
        directory, _, name = spec.partition("=")
        design = designs.BY_NAME[name]
        path = pathlib.Path(directory)
        _log(started, f"{name}: reading {path}")
        truth = Truth.load(path / "truth.json")
        records = list(read_view(path / "view.jsonl"))
        _log(started, f"{name}: {len(records)} records, {len(truth.people)} people; attacks")
        cpu0 = time.process_time()
        result = measure(
            design,
            records,
            truth,
            tick_seconds=args.tick,
            with_hours=not args.no_hours,
            shuffle=not args.no_shuffle,
            message_cuts=args.cuts,
        )
        result.wall_s, result.cpu_s = _timing(path)
        _log(started, f"{name}: scored in {time.process_time() - cpu0:.0f} s CPU")
        sizes.append(f"{name} {result.people} people × {result.days:g} days")
        results.append(result)
        if design == designs.DEFAULT:
            default_truth = truth
    names = args.design or ([] if args.study or args.reuse else [d.name for d in designs.ALL])
    chosen = tuple(designs.BY_NAME[n] for n in names)
    to_run = tuple(d for d in chosen if d.measured or default_truth is None)
    if to_run:
        config = Config(
            designs=to_run,
            people=args.people,
            days=args.days,
            cadence_people=args.cadence_people,
            cadence_days=args.cadence_days,
            seed=args.seed,
            tick_seconds=args.tick,
            with_hours=not args.no_hours,
        )
        results += run(config, lambda line: _log(started, line), jobs=args.jobs)
        modes = []
        if any(not d.cadence for d in to_run):
            modes.append(f"default mode {args.people} people × {args.days:g} days")
        if any(d.cadence for d in to_run):
            modes.append(f"cadence mode {args.cadence_people} people × {args.cadence_days:g} days")
        sizes.append(f"{', '.join(d.name for d in to_run)}: {', '.join(modes)}")
    for design in chosen:
        if not design.measured and default_truth is not None:
            results.append(model(design, default_truth))
    notes = f"Sizes: {'; '.join(sizes)}; seed {args.seed}; cadence tick {args.tick} s."
    paths = report.write(results, args.out, title=args.title, notes=notes, sizes=sizes)
    print(f"wrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    if args.publish:
        shutil.copyfile(paths["markdown"], ROOT / "docs" / f"{args.publish}-report.md")
        shutil.copyfile(paths["chart"], ROOT / "docs" / f"{args.publish}-accuracy.png")
        print(f"copied to docs/{args.publish}-report.md and docs/{args.publish}-accuracy.png")
    for r in results:
        print(json.dumps({"design": r.name, "wall_s": round(r.wall_s), "cpu_s": round(r.cpu_s)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
