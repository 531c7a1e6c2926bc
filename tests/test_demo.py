"""The README's main command: the demo runs and every party reads what was sent to it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sotto import demo


def test_demo_delivers_every_message(capsys: pytest.CaptureFixture[str]) -> None:
    demo.run()
    out = capsys.readouterr().out
    assert out.count("Bob reads from Alice") == 5  # four 1:1 messages and the group one
    assert "Alice reads from Bob: 'Hi Alice! Yes, 12:30 at the usual place.'" in out
    assert out.count("reads from Alice: 'Team: the demo works, drinks on me.'") == 2
    sees = [line.split("sees", 1)[1] for line in out.splitlines() if " sees " in line]
    assert len(sees) == 2 and sees[0] == sees[1] and len(sees[0].split()) == 12


def test_demo_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sotto.demo"], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Safety numbers" in proc.stdout
