"""The metadata-leakage benchmark (``sotto audit leakage``): what a relay operator could infer.

It runs studies (:mod:`sotto.audit.sim.study`: simulated people on real clients against the real
relay, the operator's view recorded by the relay) and attacks that view. Modules (imported on
use, since the benchmark pulls in numpy and the whole client engine): :mod:`.run` (the benchmark),
:mod:`.designs` (the designs compared), :mod:`.attacks` (the attacks on the view and their
scores), :mod:`.modelled` (baselines computed from a study's truth), :mod:`.report` and
:mod:`.chart` (rendering), :mod:`.frontier` and :mod:`.frontier_chart` (the benchmark swept over the
product's settings, and its plot); helpers the attacks reuse: :mod:`.sda` (statistical disclosure),
:mod:`.linking`, :mod:`.views` (the event arrays they read) and :mod:`.metrics`; :mod:`.toy`
(traces with known answers, for the closed-form checks).
"""

__all__ = [
    "attacks",
    "chart",
    "designs",
    "frontier",
    "frontier_chart",
    "linking",
    "metrics",
    "modelled",
    "report",
    "run",
    "sda",
    "toy",
    "views",
]
