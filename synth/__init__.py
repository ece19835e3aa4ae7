"""Synthetic multi-agency data with ground truth.

``generate(params, out_dir)`` writes the five agency extracts (formats of
``ingest.agencies`` in the configuration) and ``out_dir/truth/``; ``simulate(params)`` does the
same simulation without writing files. See data_samples/README.md for every file and column.
"""

from synth.core import (
    TRUTH_DIR,
    TRUTH_FILES,
    Cohort,
    World,
    generate,
    simulate,
    simulate_offending,
)
from synth.params import DRIFTS, DriftParams, SynthParams

__all__ = [
    "DRIFTS",
    "DriftParams",
    "TRUTH_DIR",
    "TRUTH_FILES",
    "Cohort",
    "SynthParams",
    "World",
    "generate",
    "simulate",
    "simulate_offending",
]
