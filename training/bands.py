"""Risk bands: probability cut-points set in the YAML and frozen into each model version.

Bands are never quantiles of a batch (a band must mean the same thing on any day). Their names
describe the likelihood of a recorded re-offence ("lower likelihood" .. "highest likelihood"),
never danger or safety; each carries a ``use`` (outreach, punitive or none) that the fairness
gate reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ipvi.config import BandConfig


def assign_bands(
    probability: np.ndarray, bands: Sequence[BandConfig]
) -> tuple[np.ndarray, np.ndarray]:
    """The band name and use of each probability, by the frozen cut-points ``bands``."""
    lowers = np.array([band.lower for band in bands])
    position = np.searchsorted(lowers, np.asarray(probability), side="right") - 1
    position = np.clip(position, 0, len(bands) - 1)
    names = np.array([band.name for band in bands], dtype=object)
    uses = np.array([band.use for band in bands], dtype=object)
    return names[position], uses[position]
