"""The tier-only path (:func:`training.scoring.tier_index`, ``RiskScorer.tier_many``) answers
exactly what the scoring path answers for the same people, on generated histories."""

from __future__ import annotations

import pandas as pd
import pytest

from ipvi.config import load_config
from training.examples import toy_history
from training.pipeline import train
from training.scoring import RiskScorer

TIER_COLUMNS = [
    "index_event_id",
    "person_id",
    "as_of",
    "tier",
    "provisional",
    "identity_review_required",
    "possible_dual_arrest",
    "tier_reasons",
    "lethality_flags",
    "linkage_run_id",
]


@pytest.fixture(scope="module")
def scorer_and_history():
    history = toy_history(300, seed=5)
    result = train(*history, load_config().training)
    scorer = RiskScorer(result.bundle, model_name="ipvi-risk", model_version="1")
    return scorer, history


def test_tier_many_equals_the_tier_part_of_score_many(scorer_and_history):
    scorer, (events, mentions, crosswalk) = scorer_and_history
    as_of = pd.Timestamp(events["recorded_at"].max())
    scored = scorer.score_many(events, mentions, crosswalk, as_of=as_of)
    tiered = scorer.tier_many(events, mentions, crosswalk, as_of=as_of)
    assert len(scored) > 100
    assert list(tiered.columns) == TIER_COLUMNS
    pd.testing.assert_frame_equal(tiered, scored[TIER_COLUMNS])
    assert set(scored["tier"]) > {"D"}


def test_tier_many_keeps_only_the_requested_people(scorer_and_history):
    scorer, (events, mentions, crosswalk) = scorer_and_history
    as_of = pd.Timestamp(events["recorded_at"].max())
    everyone = scorer.tier_many(events, mentions, crosswalk, as_of=as_of)
    wanted = sorted(everyone["person_id"])[:5]
    some = scorer.tier_many(events, mentions, crosswalk, as_of=as_of, person_ids=wanted)
    assert sorted(some["person_id"]) == wanted
    expected = everyone[everyone["person_id"].isin(wanted)].reset_index(drop=True)
    pd.testing.assert_frame_equal(some, expected)
