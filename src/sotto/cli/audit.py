"""``sotto audit``: measure what a relay could learn (``sotto audit leakage``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    name="audit",
    help="Measure what the relay could infer from what it stores and observes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def audit() -> None:
    """Measure what the relay could infer from what it stores and observes."""


@app.command()
def leakage(
    *,
    users: Annotated[int, typer.Option(help="Synthetic users.", min=50)] = 10_000,
    days: Annotated[float, typer.Option(help="Simulated days per held-out seed.", min=0.25)] = 3.0,
    seed: Annotated[int, typer.Option(help="Training seed; held-out seeds follow it.")] = 1,
    seeds: Annotated[int, typer.Option(help="Held-out seeds.", min=1)] = 1,
    out: Annotated[Path, typer.Option(help="Where to write leakage.md, leakage.json, accuracy.png.")] = Path(
        "leakage-report"
    ),
    quick: Annotated[bool, typer.Option("--quick", help="1,000 users, one day: a minute or two.")] = False,
    design: Annotated[
        list[str] | None, typer.Option("--design", help="Only these designs (repeatable).")
    ] = None,
    targets: Annotated[int, typer.Option(help="Targets per design.", min=10)] = 300,
    storage: Annotated[str, typer.Option(help="memory (fast) or sqlite (the embedded default).")] = "memory",
    jobs: Annotated[int, typer.Option(help="Designs simulated in parallel processes.", min=1)] = 1,
) -> None:
    """Simulate a population on the real relay code for each design; report what the tap and the
    dump reveal (who talks to whom, when users are online, what sizes say) and what it costs."""
    # The benchmark loads numpy and the relay code for this command only.
    from sotto.audit.leakage import report  # noqa: PLC0415
    from sotto.audit.leakage.designs import BY_NAME, DEFAULT_DESIGNS  # noqa: PLC0415
    from sotto.audit.leakage.run import BenchConfig, run  # noqa: PLC0415

    names = tuple(design) if design else tuple(d.name for d in DEFAULT_DESIGNS)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise typer.BadParameter(f"unknown design {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if storage not in ("memory", "sqlite"):
        raise typer.BadParameter("storage is memory or sqlite")
    if quick:
        users, days, targets = min(users, 1_000), min(days, 1.0), min(targets, 100)
    config = BenchConfig(
        users=users,
        days=days,
        train_seed=seed,
        train_days=min(days, 1.0),
        eval_seeds=tuple(seed + 1 + i for i in range(seeds)),
        designs=names,
        targets=targets,
        budget=200 if quick else 1_000,
        storage=storage,
        jobs=jobs,
    )
    console = Console(stderr=True)
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=1.0)

        def progress(label: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=label)

        result = run(config, progress)
    paths = report.write(result, out)
    console.print(
        f"wrote {paths['markdown']}, {paths['json']} and {paths['chart']}", markup=False, highlight=False
    )
    summary = report.aggregate(result)
    for name, data in summary.items():
        tap, dump = data["tap"]["edges"], data["dump"]["edges"]
        console.print(
            f"{name:24s} tap top-1 {tap['top1']:.3f} (chance {tap['chance_top1']:.4f}), "
            f"median messages {tap['mti_median'] if tap['mti_median'] is not None else '> budget'}; "
            f"dump top-1 {dump['top1']:.3f}",
            markup=False,
            highlight=False,
        )
