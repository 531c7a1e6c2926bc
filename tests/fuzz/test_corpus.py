"""Replay the committed fuzz corpus under plain pytest: every decoder keeps its contract on every seed.

Every seed must return or raise only what the decoder's contract allows: ``seed-valid*`` are real
encodings (at least one per target must decode), ``seed-edge-*`` edge cases, and ``regression-*``
each an input that once broke a decoder. ``make fuzz`` runs the same targets under atheris.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.fuzz.run import SEEDS
from tests.fuzz.targets import TARGETS, check

CASES = sorted((target, path) for target in TARGETS for path in (SEEDS / target).glob("*"))


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_seed_keeps_the_decoder_contract(target: str, path: Path) -> None:
    check(TARGETS[target], path.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_valid_seed_decodes(target: str) -> None:
    """Each target has real encodings among its seeds, and at least one decodes (some seeds keep
    an older header format that a decoder may since refuse, politely)."""
    valid = sorted((SEEDS / target).glob("seed-valid*"))
    assert valid, f"{target} has no valid seed"
    decoded = 0
    for path in valid:
        with contextlib.suppress(*TARGETS[target].allowed):
            TARGETS[target].run(path.read_bytes())
            decoded += 1
    assert decoded, f"no valid seed of {target} decodes"


def test_every_corpus_folder_names_a_target() -> None:
    assert {p.name for p in SEEDS.iterdir() if p.is_dir()} == set(TARGETS)


def test_check_reports_an_exception_outside_the_contract() -> None:
    from tests.fuzz.targets import ContractViolation, Target

    def broken(data: bytes) -> object:
        return data[5]

    with pytest.raises(ContractViolation, match="IndexError"):
        check(Target("broken", broken, TARGETS["content"].allowed, ""), b"")
