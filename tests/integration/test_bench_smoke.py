"""``bench/relay.py --quick`` runs end to end and prints every figure (not whether targets are met:
that is the full benchmark's job, on a quiet machine)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "relay.py"


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("relay_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    if str(BENCH.parent) not in sys.path:  # as when run as a script: its neighbours (relayproc)
        sys.path.insert(0, str(BENCH.parent))
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_benchmark_prints_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bench = _bench_module()
    settings = bench.Settings.quick()
    result = json.loads(out.read_text())
    for figure in bench.figures(settings):
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(figure.label)), None)
        assert line is not None, f"{figure.label!r} not printed:\n{done.stdout}"
        value = result["median"][figure.key]
        assert isinstance(value, int | float) and math.isfinite(value), (figure.key, value)
        if figure.meets is not None:
            assert "met" in line or "MISSED" in line, line  # the target is printed next to it
    median = result["median"]
    assert median["lost"] == 0
    assert median["connections_alive"] == settings.connections == 1_000
    assert median["sotto_rate"] > 0 and median["minimal_rate"] > 0
    assert 0 < median["sotto_p50_ms"] <= median["sotto_p99_ms"]
    assert median["kib_per_idle_connection"] > 0
    assert "unexpected frames or closes: none" in done.stdout
