"""A small loader for the Wycheproof JSON files vendored beside it.

The files live in this directory (C2SP/wycheproof ``testvectors_v1``, unchanged, Apache 2.0: see
``LICENSE`` and ``README.md`` here); ``SOTTO_WYCHEPROOF`` points the loader at another copy. A
missing file is a test failure, never a skip: the vectors are the evidence that the wrappers
behave, so their absence must be loud.

A test takes a :class:`VectorFile`, narrows it with :meth:`VectorFile.select` (each filter is
counted and named, so nothing disappears silently), runs every selected case, then calls
:func:`report` with the number it ran; ``report`` checks that number against the selection and
records it for the end-of-run summary.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_DIR = Path(__file__).resolve().parent

RESULTS = ("valid", "invalid", "acceptable")

RAN: dict[str, str] = {}
"""Test name -> one-line account of the vectors it ran, printed at the end of the run."""


def vector_dir() -> Path:
    override = os.environ.get("SOTTO_WYCHEPROOF")
    path = Path(override) if override else DEFAULT_DIR
    if not path.is_dir():
        pytest.fail(
            f"Wycheproof vectors not found at {path}: they are vendored in tests/vectors/wycheproof "
            "(SOTTO_WYCHEPROOF points elsewhere)",
            pytrace=False,
        )
    return path


@dataclass(frozen=True)
class Case:
    """One Wycheproof test case, with the group parameters it belongs to."""

    file: str
    tc_id: int
    result: str
    flags: frozenset[str]
    comment: str
    group: Mapping[str, Any]
    fields: Mapping[str, Any]

    def hex(self, name: str) -> bytes:
        value = self.fields[name]
        assert isinstance(value, str), f"{self}: field {name} is not a hex string"
        return bytes.fromhex(value)

    def has(self, name: str) -> bool:
        return name in self.fields

    def __str__(self) -> str:
        return f"{self.file}#{self.tc_id} ({self.result}, {sorted(self.flags)}, {self.comment!r})"


@dataclass(frozen=True)
class Selection:
    """The cases a test runs, and how many each named filter left out."""

    source: VectorFile
    cases: tuple[Case, ...]
    excluded: Mapping[str, int] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __len__(self) -> int:
        return len(self.cases)

    def select(self, reason: str, keep: Callable[[Case], bool]) -> Selection:
        kept = tuple(c for c in self.cases if keep(c))
        excluded = dict(self.excluded)
        excluded[reason] = excluded.get(reason, 0) + len(self.cases) - len(kept)
        return Selection(self.source, kept, excluded)

    def left_out(self) -> tuple[Case, ...]:
        """The cases of the file that the filters removed (to check the wrapper refuses them)."""
        ids = {c.tc_id for c in self.cases}
        return tuple(c for c in self.source.cases if c.tc_id not in ids)


@dataclass(frozen=True)
class VectorFile:
    name: str
    algorithm: str
    number_of_tests: int
    cases: tuple[Case, ...]

    def all(self) -> Selection:
        return Selection(self, self.cases)

    def select(self, reason: str, keep: Callable[[Case], bool]) -> Selection:
        return self.all().select(reason, keep)


def load(name: str) -> VectorFile:
    """Parse ``name`` (e.g. ``"x25519_test.json"``) and check its declared test count."""
    path = vector_dir() / name
    if not path.is_file():
        pytest.fail(f"Wycheproof file {path} is missing", pytrace=False)
    data = json.loads(path.read_text(encoding="utf-8"))
    cases: list[Case] = []
    for group in data["testGroups"]:
        params = {k: v for k, v in group.items() if k != "tests"}
        for test in group["tests"]:
            result = test["result"]
            assert result in RESULTS, f"{name}#{test['tcId']}: unknown result {result!r}"
            cases.append(
                Case(
                    file=name,
                    tc_id=int(test["tcId"]),
                    result=result,
                    flags=frozenset(test.get("flags", ())),
                    comment=test.get("comment", ""),
                    group=params,
                    fields=test,
                )
            )
    declared = int(data["numberOfTests"])
    assert len(cases) == declared, f"{name}: {len(cases)} cases but numberOfTests says {declared}"
    assert len({c.tc_id for c in cases}) == len(cases), f"{name}: duplicate tcId"
    return VectorFile(name=name, algorithm=data["algorithm"], number_of_tests=declared, cases=tuple(cases))


def report(test: str, selection: Selection, ran: int, failures: list[str]) -> None:
    """Fail on any failure; check ``ran`` equals the selection (and is not zero); record the count."""
    assert not failures, f"{len(failures)} of {ran} vectors failed:\n" + "\n".join(failures[:40])
    assert ran > 0, f"{test}: no vectors ran"
    assert ran == len(selection), f"{test}: ran {ran} but selected {len(selection)}"
    left_out = sum(selection.excluded.values())
    assert ran + left_out == selection.source.number_of_tests
    detail = ", ".join(f"{n} {reason}" for reason, n in selection.excluded.items() if n)
    RAN[test] = f"{selection.source.name}: {ran} ran" + (f", left out: {detail}" if detail else "")
