"""The benchmark: populations, every design side by side, attacks, window choice on a training
seed, scores on held-out seeds.

:func:`run` returns a JSON-ready dict (:mod:`~sotto.audit.leakage.report` renders it). The
disclosure window is chosen per design on the training seed (best top-1, then mean average
precision) and applied unchanged to the held-out seeds; the held-out sweep is reported too, as the
oracle upper bound, never used to choose.
"""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sotto.audit.leakage import evaluate, metrics, toy
from sotto.audit.leakage.designs import BY_NAME, DEFAULT_DESIGNS, Design
from sotto.audit.leakage.driver import Driver, RunResult
from sotto.audit.leakage.population import Population, PopulationConfig, generate
from sotto.audit.leakage.sizes import SizeModel

WINDOWS: tuple[float, ...] = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0)
CURVE_POINTS: tuple[int, ...] = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)

Progress = Callable[[str, float], None]
"""(what is running, fraction of the whole benchmark done)."""


@dataclass(frozen=True, slots=True)
class BenchConfig:
    users: int = 10_000
    days: float = 3.0
    train_seed: int = 1
    train_days: float | None = 1.0
    """Days of the training population (None: ``days``); it only chooses windows."""
    eval_seeds: tuple[int, ...] = (2,)
    designs: tuple[str, ...] = tuple(d.name for d in DEFAULT_DESIGNS)
    windows: tuple[float, ...] = WINDOWS
    targets: int = 300
    budget: int = 1_000
    storage: str = "memory"
    jobs: int = 1
    data_dir: str | None = None

    def population(self, seed: int, days: float | None = None) -> PopulationConfig:
        return PopulationConfig(users=self.users, days=days or self.days, seed=seed)


@dataclass(slots=True)
class _Job:
    config: BenchConfig
    design: str
    seed: int
    days: float
    train: bool
    window: float | None = None
    progress: dict[str, float] = field(default_factory=dict)


@functools.lru_cache(maxsize=2)
def _population(config: PopulationConfig) -> Population:
    return generate(config)


@functools.lru_cache(maxsize=1)
def _sizes() -> SizeModel:
    return SizeModel()


def _simulate(job: _Job, progress: Callable[[float], None] | None) -> tuple[Population, RunResult]:
    cfg = job.config
    population = _population(cfg.population(job.seed, job.days))
    design = BY_NAME[job.design]
    data_dir = Path(cfg.data_dir) / f"seed{job.seed}" if cfg.data_dir else None
    driver = Driver(population, design, _sizes(), storage=cfg.storage, data_dir=data_dir, seed=job.seed)
    return population, asyncio.run(driver.run(progress))


def train(job: _Job, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """One design on the training seed: top-1 and MAP per window (no messages-to-identify)."""
    population, result = _simulate(job, progress)
    targets = evaluate.choose_targets(population, result.truth, job.config.targets, seed=job.seed)
    attack = evaluate.attack_tap(result)
    sweep = {}
    for w in job.config.windows:
        m = evaluate.tap_edges(result, attack, population, targets, window=w, budget=0, with_mti=False)
        sweep[str(w)] = {"top1": round(m.top1, 4), "map": round(m.map, 4)}
    best = max(job.config.windows, key=lambda w: (sweep[str(w)]["top1"], sweep[str(w)]["map"], -w))
    return {"design": job.design, "sweep": sweep, "window": best, "wall_s": round(result.wall_s, 1)}


def held_out(job: _Job, progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """One design on a held-out seed: every attack on both views, with the trained window."""
    started = time.perf_counter()
    cfg = job.config
    population, result = _simulate(job, progress)
    simulated = time.perf_counter()
    targets = evaluate.choose_targets(population, result.truth, cfg.targets, seed=job.seed)
    attack = evaluate.attack_tap(result)
    tap_edges = evaluate.tap_edges(result, attack, population, targets, window=job.window, budget=cfg.budget)
    oracle = {}
    for w in cfg.windows:
        m = evaluate.tap_edges(result, attack, population, targets, window=w, budget=0, with_mti=False)
        oracle[str(w)] = round(m.top1, 4)
    dump_attack = evaluate.attack_dump(result.dump)
    dump_edges = evaluate.dump_edges(result, dump_attack, population, targets)
    mti = [k for k in tap_edges.mti]
    return {
        "design": job.design,
        "seed": job.seed,
        "window": job.window,
        "population": {
            "users": population.users,
            "edges": len(population.edges),
            "texts": len(population.text_t),
            "typing": int(np.isfinite(population.typing_t).sum()),
            "envelopes": result.costs.envelopes,
            "days": population.config.days,
        },
        "tap": {
            "edges": tap_edges.summary(cfg.budget),
            "oracle_top1_by_window": oracle,
            "curve": _curve(mti),
            "linking": evaluate.tap_linking(result, attack),
            "presence": evaluate.tap_presence(result, attack, population, targets.users),
            "sizes": evaluate.tap_sizes(result),
        },
        "dump": {
            "edges": dump_edges.summary(cfg.budget),
            "direct_edge_recall": _dump_recall(result, dump_attack, population),
            "curve": _curve(dump_edges.mti),
            "presence": evaluate.dump_presence(result, dump_attack, population, targets.users),
            "sizes": evaluate.dump_sizes(result, dump_attack),
            "snapshots": len(result.dump.snapshots),
            "tables": {name: len(rows) for name, rows in result.dump.snapshots[-1].tables.items()}
            if result.dump.snapshots
            else {},
            "log_lines": len(result.dump.snapshots[-1].log) if result.dump.snapshots else 0,
        },
        "costs": evaluate.costs(result, population),
        "wall_s": {
            "simulate": round(simulated - started, 1),
            "attacks": round(time.perf_counter() - simulated, 1),
        },
        "storage": result.storage,
    }


def evaluate_design(config: BenchConfig, design: str, seed: int, window: float | None) -> dict[str, Any]:
    """One design on one seed with a given disclosure window (what a held-out run does)."""
    return held_out(_Job(config, design, seed, config.days, False, window))


def _curve(mti: list[int | None]) -> dict[str, float]:
    """Fraction of targets whose strongest correspondent is identified within k messages."""
    n = len(mti)
    found = np.array([k for k in mti if k is not None], dtype=np.int64)
    return {str(k): round(float((found <= k).sum()) / n, 4) if n else 0.0 for k in CURVE_POINTS}


def _dump_recall(result: RunResult, attack: evaluate.DumpAttack, population: Population) -> float | None:
    """Share of pairs that exchanged a text whose edge the dump shows directly (C1)."""
    truth = result.truth
    texted = {
        (min(a, b), max(a, b))
        for a, b in zip(population.text_src.tolist(), population.text_dst.tolist(), strict=True)
    }
    if not attack.edges:
        return 0.0
    seen = set()
    for s, r in attack.edges:
        a, b = truth.account_user.get(s, -1), truth.account_user.get(r, -1)
        seen.add((min(a, b), max(a, b)))
    return round(len(texted & seen) / len(texted), 4) if texted else None


def calibration_toys(seed: int = 0) -> dict[str, Any]:
    """Tier 0: the attack code against the closed forms of metadata-research §2.10."""
    out: dict[str, Any] = {"intersection": [], "sda": []}
    users = 100_000
    for p in (0.001, 0.01, 0.05, 0.1):
        runs = [toy.intersection_epochs(users, p, seed + s) for s in range(10)]
        found = [r for r in runs if r is not None]
        out["intersection"].append(
            {
                "users": users,
                "p": p,
                "bound": round(metrics.intersection_bound(users, p), 2),
                "median_epochs": float(np.median(found)) if found else None,
            }
        )
    for n, b, m in ((10_000, 500, 10), (20_000, 400, 12)):
        bound = metrics.sda_bound(n, b, m)
        runs = [toy.threshold_mix_rounds(n, b, m, seed=seed + s, max_rounds=int(4 * bound)) for s in range(6)]
        found = [r for r in runs if r is not None]
        out["sda"].append(
            {
                "users": n,
                "batch": b,
                "friends": m,
                "bound": round(bound, 1),
                "mean_rounds": round(float(np.mean(found)), 1) if found else None,
            }
        )
    return out


def run(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The whole benchmark (see the module docstring)."""
    started = time.perf_counter()
    designs = [BY_NAME[name] for name in config.designs]
    jobs_train = [
        _Job(config, d.name, config.train_seed, config.train_days or config.days, True) for d in designs
    ]
    total = len(jobs_train) + len(designs) * len(config.eval_seeds)
    done = 0

    def tick(label: str) -> Callable[[float], None]:
        def report(fraction: float) -> None:
            if progress is not None:
                progress(label, (done + fraction) / total)

        return report

    def finished() -> None:
        nonlocal done
        done += 1

    trained: dict[str, dict[str, Any]] = {}
    for result in _map(config, train, jobs_train, tick, stage="train", finished=finished):
        trained[result["design"]] = result
    jobs_eval = [
        replace(
            _Job(config, d.name, seed, config.days, False),
            window=trained[d.name]["window"],
        )
        for seed in config.eval_seeds
        for d in designs
    ]
    evaluated = _map(config, held_out, jobs_eval, tick, stage="held-out", finished=finished)
    if progress is not None:
        progress("calibration toys", 1.0)
    toys = calibration_toys()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "config": asdict(config),
        "designs": {d.name: _describe(d) for d in designs},
        "training": trained,
        "held_out": evaluated,
        "toys": toys,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "wall_s": round(time.perf_counter() - started, 1),
            "max_rss_mib": round(max(usage.ru_maxrss, children.ru_maxrss) / 1024, 1),
        },
    }


def _describe(design: Design) -> dict[str, Any]:
    return {
        "label": design.label,
        "addressing": design.addressing.value,
        "sender": design.sender.value,
        "send_path": design.send_path.value,
        "drain_path": design.drain_path.value,
        "receipts": design.receipts.value,
        "receipt_delay_s": design.receipt_delay_s,
        "padding": design.padding.value,
        "rotation_days": design.rotation_days,
        "send_tick_s": design.send_tick_s,
        "drain_jitter_s": design.drain_jitter_s,
        "note": design.note,
    }


def _map(
    config: BenchConfig,
    fn: Callable[[_Job, Callable[[float], None] | None], dict[str, Any]],
    jobs: list[_Job],
    tick: Callable[[str], Callable[[float], None]],
    *,
    stage: str,
    finished: Callable[[], None],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if config.jobs <= 1 or len(jobs) <= 1:
        for job in jobs:
            out.append(fn(job, tick(f"{stage}: {job.design} (seed {job.seed})")))
            finished()
        return out
    with ProcessPoolExecutor(max_workers=config.jobs) as pool:
        futures = [pool.submit(fn, job, None) for job in jobs]
        for job, future in zip(jobs, futures, strict=True):
            out.append(future.result())
            finished()
            tick(f"{stage}: {job.design} (seed {job.seed}) done")(0.0)
    return out
