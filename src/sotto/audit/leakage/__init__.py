"""The metadata-leakage benchmark (``sotto audit leakage``): what a relay operator could infer.

Modules (imported on use, since the benchmark pulls in numpy and the whole client engine):
:mod:`.run` (the benchmark and its entry point), :mod:`.population` (who knows whom and when they
talk), :mod:`.designs` (the designs compared), :mod:`.driver` (the real relay and clients driven
with a population), :mod:`.views` (the tap, the dump and the truth), :mod:`.sda`,
:mod:`.linking` and :mod:`.sizes` (the attacks), :mod:`.evaluate` and :mod:`.metrics` (scores),
:mod:`.report` and :mod:`.chart` (rendering), :mod:`.toy` (traces with known answers).
"""

__all__ = [
    "chart",
    "designs",
    "driver",
    "evaluate",
    "linking",
    "metrics",
    "population",
    "report",
    "run",
    "sda",
    "sizes",
    "toy",
    "views",
]
