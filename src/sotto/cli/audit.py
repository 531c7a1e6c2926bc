"""``sotto audit``: measure what a relay could learn (``sotto audit leakage``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="audit",
    help="Measure what the relay could infer from what it stores and observes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

QUICK_PEOPLE, QUICK_DAYS = 100, 1.0
QUICK_CADENCE_PEOPLE, QUICK_CADENCE_DAYS = 16, 1.0


@app.callback()
def audit() -> None:
    """Measure what the relay could infer from what it stores and observes."""


@app.command()
def leakage(
    *,
    people: Annotated[int, typer.Option(help="People in each default-mode study.", min=4)] = 1_000,
    days: Annotated[float, typer.Option(help="Simulated days of each default-mode study.", min=0.1)] = 1.0,
    cadence_people: Annotated[int, typer.Option(help="People in each cadence-mode study.", min=4)] = 100,
    cadence_days: Annotated[
        float, typer.Option(help="Simulated days of each cadence-mode study.", min=0.1)
    ] = 2.0,
    seed: Annotated[int, typer.Option(help="The population's seed.")] = 1,
    tick: Annotated[int, typer.Option(help="The relay's cadence tick in seconds.", min=10)] = 300,
    design: Annotated[
        list[str] | None,
        typer.Option("--design", help="Only these designs (repeatable); default: all, or the quick set."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="Only the designs of one mode: cadence or default (with the baselines)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write leakage.md, leakage.json, accuracy.png.")] = Path(
        "leakage-report"
    ),
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help=f"{QUICK_CADENCE_PEOPLE} cadence people and {QUICK_PEOPLE} default people for a day; "
            "both modes and the baselines, no ablations: a few minutes at most.",
        ),
    ] = False,
    hours: Annotated[bool, typer.Option(help="Score hours to identify (runs each attack on cuts).")] = True,
    jobs: Annotated[
        int,
        typer.Option(
            help="Run up to this many designs' studies at once, each in a process of its own "
            "(each holds its study in memory; the results are the same).",
            min=1,
        ),
    ] = 1,
) -> None:
    """Simulate people on real clients against the real relay, for each design; run every attack on
    what the relay operator observed and report what they reveal (who talks to whom, when people
    are online) and what the design costs."""
    # The benchmark loads numpy and the simulation for this command only.
    from sotto.audit.leakage import designs, report  # noqa: PLC0415
    from sotto.audit.leakage.run import Config, run  # noqa: PLC0415

    if design:
        unknown = [n for n in design if n not in designs.BY_NAME]
        if unknown:
            raise typer.BadParameter(
                f"unknown design {', '.join(unknown)}; known: {', '.join(designs.BY_NAME)}"
            )
        chosen = tuple(designs.BY_NAME[n] for n in design)
    else:
        chosen = designs.QUICK if quick else designs.ALL
    if mode is not None:
        if mode not in ("cadence", "default"):
            raise typer.BadParameter("mode is cadence or default")
        chosen = tuple(d for d in chosen if not d.measured or d.cadence == (mode == "cadence"))
    if quick:
        people, days = min(people, QUICK_PEOPLE), min(days, QUICK_DAYS)
        cadence_people, cadence_days = (
            min(cadence_people, QUICK_CADENCE_PEOPLE),
            min(cadence_days, QUICK_CADENCE_DAYS),
        )
    config = Config(
        designs=chosen,
        people=people,
        days=days,
        cadence_people=cadence_people,
        cadence_days=cadence_days,
        seed=seed,
        tick_seconds=tick,
        with_hours=hours,
    )
    console = Console(stderr=True, soft_wrap=True)
    started = time.perf_counter()

    def progress(line: str) -> None:
        console.print(f"[{time.perf_counter() - started:6.0f} s] {line}", markup=False, highlight=False)

    progress(
        f"designs {', '.join(d.name for d in chosen)}; default mode {people} people × {days:g} days, "
        f"cadence mode {cadence_people} people × {cadence_days:g} days, seed {seed}, tick {tick} s"
    )
    results = run(config, progress, jobs=jobs)
    notes = (
        f"Sizes: default mode {people} people × {days:g} days, cadence mode {cadence_people} people × "
        f"{cadence_days:g} days; seed {seed}; cadence tick {tick} s. `sotto audit leakage"
        f"{' --quick' if quick else ''}`."
    )
    paths = report.write(results, out, notes=notes)
    console.print(
        f"wrote {paths['markdown']}, {paths['json']} and {paths['chart']}", markup=False, highlight=False
    )
    for r in results:
        best = r.best()
        console.print(
            f"{r.name:22s} {'measured' if r.measured else 'modelled':8s} contact top-1 "
            f"{best.top1 if best else 0:.2f} ({best.attack if best else '-'}; chance "
            f"{max(best.chance_people, best.chance_mailboxes) if best else 0:.3f}), presence AUC device on "
            f"{r.presence.get('device_on') or 0:.2f}",
            markup=False,
            highlight=False,
        )
        sizes_and_files = [row for row in r.rows if row.files or row.attack in ("padding", "backlog")]
        if sizes_and_files:
            console.print(
                f"{'':22s} sizes, backlogs and files: "
                + ", ".join(f"{row.attack} {row.top1:.2f}" for row in sizes_and_files),
                markup=False,
                highlight=False,
            )
