"""Baselines the model must beat: the rule tiers as an ordinal score, an ODARA-style count.

ODARA (Hilton et al. 2004) adds up 13 yes/no items from police records. The items below are
the ones these records support, declared once as data: each is ``[feature, op, value]`` over
the shared feature definitions, and the score is how many hold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ipvi.columns import Columns
from training.tiers import TIER_ORDINAL, condition_mask

ODARA_ITEMS: tuple[tuple[str, tuple[str, str, float]], ...] = (
    ("prior domestic incident", ("prior_ipv_offences", ">=", 1)),
    ("prior non-domestic offence", ("prior_nonipv_offences", ">=", 1)),
    ("prior jail booking", ("prior_custody", ">=", 1)),
    ("failure on conditional release (order)", ("po_violations", ">=", 1)),
    ("failure on conditional release (probation)", ("probation_violations", ">=", 1)),
    ("threat to kill at the index offence", ("index_threat_to_kill", ">=", 1)),
    ("confinement: strangulation at the index offence", ("index_strangulation", ">=", 1)),
    ("children present at the index offence", ("index_children_present", ">=", 1)),
    ("victim injured at the index offence", ("index_injury", ">=", 1)),
    ("weapon at the index offence", ("index_weapon", ">=", 1)),
    ("violence against more than one partner", ("distinct_victims", ">=", 2)),
)


def odara_count(X: Columns) -> np.ndarray:
    """How many ODARA-style items hold for each row (0 to len(ODARA_ITEMS))."""
    return np.sum([condition_mask(X, item) for _, item in ODARA_ITEMS], axis=0).astype(int)


def tier_score(tiers: pd.Series) -> np.ndarray:
    """The tiers as an ordinal score: D=1, C=2, B=3, A=4."""
    return tiers.map(TIER_ORDINAL).to_numpy(dtype=int)
