"""Documentation that works when pasted: every ```python block in README.md and docs/ runs."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SNIPPETS = [
    pytest.param(code, id=f"{path.name}#{n}")
    for path in DOCS
    for n, code in enumerate(BLOCK.findall(path.read_text(encoding="utf-8")), 1)
]


@pytest.mark.parametrize("code", SNIPPETS)
def test_python_snippet_runs(code: str) -> None:
    exec(compile(code, "<doc snippet>", "exec"), {"__name__": "__doc_snippet__"})


def test_docs_have_snippets() -> None:
    assert SNIPPETS, "expected at least one python example in the docs"
