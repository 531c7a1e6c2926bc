"""The full-size metadata-leakage benchmark (issue 4): every design side by side.

    python bench/leakage.py [--users 10000] [--days 3] [--train-days 1] [--seeds 1] [--jobs 2]
                            [--out bench/results/leakage] [--publish]
    python bench/leakage.py --cadence [--publish]     # cadence mode beside every design, 1,000 users

Runs :func:`sotto.audit.leakage.run.run` (the same code as ``sotto audit leakage``) and writes
``leakage.md``, ``leakage.json`` and ``accuracy.png`` to ``--out``. With ``--publish`` it also
copies the Markdown report to ``docs/metadata-report.md`` and the chart to
``docs/metadata-accuracy.png``, the committed figures ``docs/metadata.md`` quotes.

``--cadence`` adds the client's cadence mode (``sotto-cadence``) to the designs. It sends an
envelope per contact every five minutes, about a hundred times the envelopes of the others, so this
run defaults to 1,000 users and one day (``--users``/``--days`` still apply); ``--publish`` then
writes ``docs/metadata-cadence-report.md`` and ``docs/metadata-cadence-accuracy.png``.

Minutes, not seconds: at 10,000 users each design replays a few hundred thousand sessions and a
few million envelopes through the relay's storage and delivery code; ``--jobs`` runs designs in
parallel processes (one per core).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import time

from sotto.audit.leakage import report
from sotto.audit.leakage.designs import CADENCE, DEFAULT_DESIGNS
from sotto.audit.leakage.run import BenchConfig, run

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, help="10,000 (1,000 with --cadence)")
    parser.add_argument("--days", type=float, help="3 (1 with --cadence)")
    parser.add_argument("--cadence", action="store_true", help="add cadence mode (see above)")
    parser.add_argument("--train-days", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1, help="training seed; held-out seeds follow")
    parser.add_argument("--seeds", type=int, default=1, help="held-out seeds")
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--budget", type=int, default=1_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--storage", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--design", action="append", help="only these designs (repeatable)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "leakage")
    parser.add_argument("--publish", action="store_true", help="copy the report and chart into docs/")
    args = parser.parse_args(argv)
    designs = [d.name for d in DEFAULT_DESIGNS + (CADENCE if args.cadence else ())]
    config = BenchConfig(
        users=args.users or (1_000 if args.cadence else 10_000),
        days=args.days or (1.0 if args.cadence else 3.0),
        train_seed=args.seed,
        train_days=args.train_days,
        eval_seeds=tuple(args.seed + 1 + i for i in range(args.seeds)),
        designs=tuple(args.design or designs),
        targets=args.targets,
        budget=args.budget,
        storage=args.storage,
        jobs=args.jobs,
    )
    started = time.perf_counter()
    last = [0.0]

    def progress(label: str, fraction: float) -> None:
        now = time.perf_counter()
        if now - last[0] > 30 or fraction >= 1.0:
            last[0] = now
            print(f"[{now - started:7.0f} s] {fraction:6.1%} {label}", file=sys.stderr, flush=True)

    result = run(config, progress)
    paths = report.write(result, args.out)
    print(f"wrote {paths['markdown']}, {paths['json']}, {paths['chart']}")
    if args.publish:
        stem = "metadata-cadence" if args.cadence else "metadata"
        shutil.copyfile(paths["markdown"], ROOT / "docs" / f"{stem}-report.md")
        shutil.copyfile(paths["chart"], ROOT / "docs" / f"{stem}-accuracy.png")
        print(f"copied to docs/{stem}-report.md and docs/{stem}-accuracy.png")
    for name, data in report.aggregate(result).items():
        tap = data["tap"]["edges"]
        print(
            f"{name:24s} tap top-1 {tap['top1']:.3f} (chance {tap['chance_top1']:.5f}) "
            f"median messages {tap['mti_median']}; dump top-1 {data['dump']['edges']['top1']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
