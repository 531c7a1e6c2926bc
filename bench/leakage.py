"""The full-size metadata-leakage benchmark (issue 4): every design side by side.

    python bench/leakage.py [--users 10000] [--days 3] [--train-days 1] [--seeds 1] [--jobs 2]
                            [--out bench/results/leakage] [--publish]

Runs :func:`sotto.audit.leakage.run.run` (the same code as ``sotto audit leakage``) and writes
``leakage.md``, ``leakage.json`` and ``accuracy.png`` to ``--out``. With ``--publish`` it also
copies the Markdown report to ``docs/metadata-report.md`` and the chart to
``docs/metadata-accuracy.png``, the committed figures ``docs/metadata.md`` quotes.

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
from sotto.audit.leakage.designs import DEFAULT_DESIGNS
from sotto.audit.leakage.run import BenchConfig, run

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=float, default=3.0)
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
    config = BenchConfig(
        users=args.users,
        days=args.days,
        train_seed=args.seed,
        train_days=args.train_days,
        eval_seeds=tuple(args.seed + 1 + i for i in range(args.seeds)),
        designs=tuple(args.design or [d.name for d in DEFAULT_DESIGNS]),
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
        shutil.copyfile(paths["markdown"], ROOT / "docs" / "metadata-report.md")
        shutil.copyfile(paths["chart"], ROOT / "docs" / "metadata-accuracy.png")
        print("copied to docs/metadata-report.md and docs/metadata-accuracy.png")
    for name, data in report.aggregate(result).items():
        tap = data["tap"]["edges"]
        print(
            f"{name:24s} tap top-1 {tap['top1']:.3f} (chance {tap['chance_top1']:.5f}) "
            f"median messages {tap['mti_median']}; dump top-1 {data['dump']['edges']['top1']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
