"""Documentation that works when pasted: every ```python block in README.md and docs/ runs, and
the README's SDK program does what it says against a real relay and cleans up after itself."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sotto.demo.relay import RelayProcess, free_port

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


def readme_program(section: str) -> str:
    """The python block of one README section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    (code,) = BLOCK.findall(text[start:end])
    return str(code)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelayProcess]:
    root = tmp_path_factory.mktemp("docs-relay")
    with RelayProcess(root / "data", root / "relay.log") as process:
        process.start()
        yield process


def run_program(code: str, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``code`` as ``python hello.py ARGS``, as the README says, with its own temporary folder."""
    program = tmp_path / "hello.py"
    program.write_text(code, encoding="utf-8")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary)}
    done = subprocess.run(
        [sys.executable, str(program), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, temporary


def test_the_sdk_program_runs_as_written_and_removes_its_stores(relay: RelayProcess, tmp_path: Path) -> None:
    done, temporary = run_program(readme_program("Using the SDK"), tmp_path, relay.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Bob: hello\n"
    assert not list(temporary.iterdir()), "the program left its stores behind"


def test_the_sdk_program_removes_its_stores_when_it_fails(tmp_path: Path) -> None:
    done, temporary = run_program(
        readme_program("Using the SDK"), tmp_path, f"http://127.0.0.1:{free_port()}"
    )
    assert done.returncode != 0 and "RelayUnavailableError" in done.stderr
    assert not list(temporary.iterdir()), "the program left its stores behind"
