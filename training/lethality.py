"""Rule-based lethality markers that travel with every score, whatever its band.

A score is never read as "safe": strangulation, a weapon or firearm, a threat to kill and a
protective-order violation are shown next to every probability. The markers are data
(``training.lethality`` in the YAML), each a list of ``[feature, op, value]`` conditions of which
one must hold, over the shared feature definitions.
"""

from __future__ import annotations

import numpy as np

from ipvi.columns import Columns
from ipvi.config import LethalityFlag
from training.tiers import condition_mask, validate_conditions


def lethality_flags(X: Columns, flags: list[LethalityFlag]) -> list[list[str]]:
    """The names of the markers that hold for each row of ``X``, in configuration order."""
    masks = []
    for number, flag in enumerate(flags):
        validate_conditions(flag.any, f"training.lethality.{number}.any")
        mask = np.zeros(len(X), dtype=bool)
        for condition in flag.any:
            mask |= condition_mask(X, condition)
        masks.append(mask)
    if not masks:
        return [[] for _ in range(len(X))]
    stacked = np.column_stack(masks)
    names = np.array([flag.name for flag in flags])
    return [names[row].tolist() for row in stacked]
