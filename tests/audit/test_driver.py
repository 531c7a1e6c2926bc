"""The driver runs the relay's own storage and delivery code, and keeps the views apart."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sotto.audit.leakage.designs import SIGNAL, SOTTO, SOTTO_CADENCE, WHATSAPP, Design
from sotto.audit.leakage.driver import Driver, RunResult
from sotto.audit.leakage.population import Population, PopulationConfig, generate
from sotto.audit.leakage.sizes import Kind, SizeModel
from sotto.audit.leakage.views import Dump, Tap
from sotto.server.manifest import TABLES as MANIFEST_TABLES
from sotto.wire.padding import BUCKETS


@pytest.fixture(scope="module")
def population() -> Population:
    return generate(PopulationConfig(users=150, days=1.0, seed=11))


@pytest.fixture(scope="module")
def sizes() -> SizeModel:
    return SizeModel()


def _run(
    population: Population,
    sizes: SizeModel,
    design: Design = SOTTO,
    *,
    storage: str = "memory",
    data_dir: Path | None = None,
) -> RunResult:
    return asyncio.run(Driver(population, design, sizes, storage=storage, data_dir=data_dir).run())


@pytest.fixture(scope="module")
def sotto(population: Population, sizes: SizeModel) -> RunResult:
    return _run(population, sizes)


def test_every_text_is_deposited_and_delivered_through_the_relay(
    sotto: RunResult, population: Population
) -> None:
    truth, tap = sotto.truth, sotto.tap
    assert np.isfinite(truth.text_deposit).all()
    delivered = np.isfinite(truth.text_push)
    assert delivered.mean() > 0.97  # the rest wait for a recipient who did not come back online
    assert len(tap.dep_t) == len(truth.dep_kind) and len(tap.push_t) == len(truth.push_kind)
    kinds = set(truth.dep_kind.tolist())
    assert {Kind.TEXT, Kind.RECEIPT, Kind.TYPING} <= kinds
    assert (truth.text_push[delivered] >= truth.text_deposit[delivered]).all()
    assert set(tap.dep_size.tolist()) <= set(BUCKETS)
    assert sotto.costs.refused == 0
    assert sotto.costs.undelivered == len(tap.dep_t) - len(tap.push_t)


def test_receipts_are_batched_per_contact(sotto: RunResult) -> None:
    # One receipt message per contact per timer: texts arriving in a burst share one.
    truth = sotto.truth
    delivered = int((truth.push_kind == Kind.TEXT).sum())
    receipts = int((truth.dep_kind == Kind.RECEIPT).sum())
    assert 0.5 * delivered < receipts < delivered


def test_whatsapp_like_taps_name_senders_and_dumps_keep_a_message_log(
    population: Population, sizes: SizeModel
) -> None:
    run = _run(population, sizes, WHATSAPP)
    assert (run.tap.dep_account >= 0).all()
    log = run.dump.snapshots[-1].tables["message_log"]
    assert len(log) == len(run.tap.dep_t)
    sealed = _run(population, sizes, SIGNAL)
    assert (sealed.tap.dep_account == -1).all() and (sealed.tap.dep_conn == -1).all()
    assert "message_log" not in sealed.dump.snapshots[-1].tables


def test_the_adversary_views_hold_no_ground_truth() -> None:
    truthy = {"owner", "sender", "recipient", "user", "kind", "text", "contact"}
    for view in (Tap, Dump):
        names = {f.name for f in dataclasses.fields(view)}
        assert not {n for n in names if any(word in n for word in truthy)}


def test_sotto_dump_has_only_the_manifest_tables_and_no_sender(sotto: RunResult) -> None:
    snapshot = sotto.dump.snapshots[-1]
    assert set(snapshot.tables) <= {t.name for t in MANIFEST_TABLES}
    for rows in snapshot.tables.values():
        for row in rows[:5]:
            assert not {"sender", "time", "ip", "address"} & set(row)
    assert any(line.startswith("INFO sotto.server: stats ") for line in snapshot.log)


def _rows(dump: Dump) -> dict[str, set[tuple[object, ...]]]:
    out: dict[str, set[tuple[object, ...]]] = {}
    for name, rows in dump.snapshots[-1].tables.items():
        if rows and name != "envelope_keys":  # SQLite's own per-envelope keys, random
            # SQLite stores each envelope sealed under its own key: compare what a dump shows of it.
            shown = [
                {k: (len(v) if k == "sealed" and isinstance(v, bytes) else v) for k, v in row.items()}
                for row in rows
            ]
            out[name] = {tuple(sorted((k, v) for k, v in row.items() if k != "key_slot")) for row in shown}
    return out


def test_memory_and_sqlite_storage_give_the_same_views(
    population: Population, sizes: SizeModel, sotto: RunResult, tmp_path: Path
) -> None:
    small = generate(dataclasses.replace(population.config, users=80, days=0.5))
    memory = _run(small, sizes)
    sqlite = _run(small, sizes, storage="sqlite", data_dir=tmp_path)
    assert np.array_equal(memory.tap.dep_t, sqlite.tap.dep_t)
    assert np.array_equal(memory.tap.push_mailbox, sqlite.tap.push_mailbox)
    assert _rows(memory.dump) == _rows(sqlite.dump)
    assert list(tmp_path.glob("*.db"))  # the snapshots are copies of the database file


def _idle(population: Population) -> Population:
    """The same people, contacts and app sessions, but nobody writes anything."""
    none_f, none_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    return dataclasses.replace(
        population,
        text_t=none_f,
        text_src=none_i,
        text_dst=none_i,
        text_bytes=none_i,
        typing_t=none_f,
        conversation=none_i,
    )


_TIMING = (
    "dep_t",
    "dep_mailbox",
    "dep_conn",
    "push_t",
    "push_mailbox",
    "drain_open",
    "drain_close",
    "sub_mailbox",
)


@pytest.fixture(scope="module")
def short_population() -> Population:
    return generate(PopulationConfig(users=60, days=0.25, seed=12))


def test_cadence_mode_tap_is_the_same_whether_anyone_writes_or_not(
    short_population: Population, sizes: SizeModel
) -> None:
    chatty = _run(short_population, sizes, SOTTO_CADENCE)
    idle = _run(_idle(short_population), sizes, SOTTO_CADENCE)
    assert len(short_population.text_t) > 100
    assert np.isfinite(chatty.truth.text_push).sum() > 0.9 * len(short_population.text_t) - 50
    for name in _TIMING:
        assert np.array_equal(getattr(chatty.tap, name), getattr(idle.tap, name)), name
    # Sizes differ only where a text too long for the smallest bucket travelled.
    differ = np.nonzero(chatty.tap.dep_size != idle.tap.dep_size)[0]
    assert all(chatty.truth.dep_kind[i] == Kind.TEXT for i in differ)
    assert len(differ) < 0.02 * len(chatty.tap.dep_size)
    kinds = np.bincount(chatty.truth.dep_kind, minlength=len(Kind))
    assert kinds[Kind.COVER] > kinds[Kind.TEXT] > 0 and kinds[Kind.RECEIPT] > 0 and kinds[Kind.TYPING] == 0


def test_default_mode_tap_follows_what_people_write(short_population: Population, sizes: SizeModel) -> None:
    chatty = _run(short_population, sizes, SOTTO)
    idle = _run(_idle(short_population), sizes, SOTTO)
    assert len(chatty.tap.dep_t) > 100 and len(idle.tap.dep_t) == 0  # the control: the check above can fail
