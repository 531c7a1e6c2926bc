"""The privacy / latency / bandwidth frontier across the settings Sotto exposes.

    python bench/frontier.py [--quick] [--people 24] [--days 1] [--seed 1]
                             [--only N ...] [--out bench/results/frontier] [--publish]

For each setting of :data:`sotto.audit.leakage.frontier.SETTINGS` (mode, cadence tick and with
it the cover rate, forwarder on or off; ``--quick``: :data:`~sotto.audit.leakage.frontier.QUICK_SETTINGS`
at a small size) it runs the leakage benchmark's study (real clients on the real relay, the
operator's view recorded by the relay) with the same people and seed, scores it, and writes
``frontier.json`` (after each point, so an interrupted sweep keeps what it measured and a rerun
measures only what is missing), ``frontier.md`` (the table) and ``frontier.png`` (the plot) to
``--out``. ``--publish`` copies the table and the plot to ``docs/frontier.md`` (between its
markers) and ``docs/frontier.png``. Each point's study wall and CPU time is printed and kept.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import time

from sotto.audit.leakage import frontier
from sotto.audit.leakage.frontier_chart import frontier_chart

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- frontier table: begin -->", "<!-- frontier table: end -->"


def _log(started: float, line: str) -> None:
    print(f"[{time.perf_counter() - started:7.0f} s] {line}", file=sys.stderr, flush=True)


def _load(path: pathlib.Path) -> list[frontier.Point]:
    if not path.exists():
        return []
    return [frontier.Point.from_json(p) for p in json.loads(path.read_text(encoding="utf-8"))["points"]]


def _save(path: pathlib.Path, points: list[frontier.Point]) -> None:
    body = {"points": [p.to_json() for p in points]}
    path.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="three settings, 8 people for a day")
    parser.add_argument("--people", type=int)
    parser.add_argument("--days", type=float)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--only", type=int, action="append", help="only the N-th setting (1-based; repeatable)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench" / "results" / "frontier")
    parser.add_argument("--publish", action="store_true", help="copy the table and plot into docs/")
    parser.add_argument("--title", default="SOTTO: PRIVACY / LATENCY / BANDWIDTH FRONTIER")
    args = parser.parse_args(argv)
    settings = frontier.QUICK_SETTINGS if args.quick else frontier.SETTINGS
    people = args.people or (8 if args.quick else 24)
    days = args.days or 1.0
    if people < 2 or days <= 0:
        parser.error("--people must be at least 2 and --days above 0")
    if args.only:
        if not all(1 <= n <= len(settings) for n in args.only):
            parser.error(f"--only takes 1 to {len(settings)}")
        settings = tuple(settings[n - 1] for n in args.only)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "frontier.json"
    started = time.perf_counter()
    kept = {(p.setting, p.people, p.days, p.seed): p for p in _load(store)}
    points: list[frontier.Point] = []
    for setting in settings:
        key = (setting, people, days, args.seed)
        if key in kept:
            _log(started, f"{setting.name}: measured already, kept")
            points.append(kept[key])
            continue
        _log(started, f"{setting.name}: {people} people × {days:g} days, seed {args.seed}")
        point = frontier.measure_point(
            setting, people=people, days=days, seed=args.seed, progress=lambda line: _log(started, line)
        )
        kept[key] = point
        points.append(point)
        _save(store, list(kept.values()))
        _log(
            started,
            f"{setting.name}: top-1 {point.top1:.2f} ({point.top1_attack}; chance {point.chance:.2f}), "
            f"AUC {point.presence_device_on}, p50 {point.latency_p50_s} s, "
            f"{point.kbytes_per_person_day:.0f} kB/person-day; study {point.wall_s:.0f} s wall, "
            f"{point.cpu_s:.0f} s CPU; scoring {point.score_cpu_s:.0f} s CPU",
        )
    table = frontier.markdown(points)
    (args.out / "frontier.md").write_text(table, encoding="utf-8")
    chart = args.out / "frontier.png"
    chart.write_bytes(frontier_chart(points, title=args.title))
    print(table)
    print(f"wrote {store}, {args.out / 'frontier.md'} and {chart}")
    if args.publish:
        doc = ROOT / "docs" / "frontier.md"
        text = doc.read_text(encoding="utf-8")
        if BEGIN not in text or END not in text:
            print(f"{doc} has no {BEGIN} … {END} markers", file=sys.stderr)
            return 1
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        doc.write_text(f"{head}{BEGIN}\n{table}{END}{tail}", encoding="utf-8")
        shutil.copyfile(chart, ROOT / "docs" / "frontier.png")
        print("copied to docs/frontier.md and docs/frontier.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
