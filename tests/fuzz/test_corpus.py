"""Replay the committed fuzz corpus under plain pytest: every decoder keeps its contract on every seed.

Seeds named ``seed-valid*`` are real encodings and must decode; ``seed-edge-*`` and ``regression-*``
inputs (the latter each an input that once broke a decoder) must return or raise only what the
decoder's contract allows. ``make fuzz`` runs the same targets under atheris.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.run import SEEDS
from tests.fuzz.targets import TARGETS, check

CASES = sorted((target, path) for target in TARGETS for path in (SEEDS / target).glob("*"))


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_seed_keeps_the_decoder_contract(target: str, path: Path) -> None:
    data = path.read_bytes()
    if path.name.startswith("seed-valid"):
        TARGETS[target].run(data)  # must decode, not merely fail politely
    else:
        check(TARGETS[target], data)


def test_every_target_has_seeds_and_every_corpus_a_target() -> None:
    folders = {p.name for p in SEEDS.iterdir() if p.is_dir()}
    assert folders == set(TARGETS)
    for target in TARGETS:
        names = [p.name for p in (SEEDS / target).iterdir()]
        assert any(n.startswith("seed-valid") for n in names), f"{target} has no valid seed"


def test_check_reports_an_exception_outside_the_contract() -> None:
    from tests.fuzz.targets import ContractViolation, Target

    def broken(data: bytes) -> object:
        return data[5]

    with pytest.raises(ContractViolation, match="IndexError"):
        check(Target("broken", broken, TARGETS["content"].allowed, ""), b"")
