"""The tier-only path (:func:`training.scoring.tier_index`, ``RiskScorer.tier_many``) answers
exactly what the scoring path answers for the same people, on generated histories; and a person
scored from their own history alone (as the service reads it) gets the answer the whole
registry gives (as training and ``ipvi score --all`` score it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ipvi.columns import Columns
from ipvi.config import load_config
from synth.histories import toy_history
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
    return scorer, [Columns.from_frame(frame) for frame in history]


def test_tier_many_equals_the_tier_part_of_score_many(scorer_and_history):
    scorer, (events, mentions, crosswalk) = scorer_and_history
    as_of = pd.Timestamp(events["recorded_at"].max())
    scored = scorer.score_many(events, mentions, crosswalk, as_of=as_of).to_frame()
    tiered = scorer.tier_many(events, mentions, crosswalk, as_of=as_of).to_frame()
    assert len(scored) > 100
    assert list(tiered.columns) == TIER_COLUMNS
    pd.testing.assert_frame_equal(tiered, scored[TIER_COLUMNS])
    assert set(scored["tier"]) > {"D"}


def test_tier_many_keeps_only_the_requested_people(scorer_and_history):
    scorer, (events, mentions, crosswalk) = scorer_and_history
    as_of = pd.Timestamp(events["recorded_at"].max())
    everyone = scorer.tier_many(events, mentions, crosswalk, as_of=as_of).to_frame()
    wanted = sorted(everyone["person_id"])[:5]
    some = scorer.tier_many(events, mentions, crosswalk, as_of=as_of, person_ids=wanted).to_frame()
    assert sorted(some["person_id"]) == wanted
    expected = everyone[everyone["person_id"].isin(wanted)].reset_index(drop=True)
    pd.testing.assert_frame_equal(some, expected)


def _own_history(history: list[Columns], person: str) -> list[Columns]:
    """One person's tables as the service reads them (training.data.person_history): their
    mentions' events, every mention of those events, and those mentions' crosswalk rows."""
    events, mentions, crosswalk = (table.to_frame() for table in history)
    records = crosswalk.loc[crosswalk["person_id"] == person, "record_id"]
    event_ids = mentions.loc[mentions["record_id"].isin(records), "event_id"]
    own_mentions = mentions[mentions["event_id"].isin(event_ids)]
    return [
        Columns.from_frame(events[events["event_id"].isin(event_ids)]),
        Columns.from_frame(own_mentions),
        Columns.from_frame(crosswalk[crosswalk["record_id"].isin(own_mentions["record_id"])]),
    ]


def test_a_person_scored_alone_gets_the_answer_of_the_whole_registry(scorer_and_history):
    scorer, history = scorer_and_history
    as_of = pd.Timestamp(history[0]["recorded_at"].max())
    everyone = scorer.score_many(*history, as_of=as_of).to_frame().set_index("person_id")
    assert len(everyone) > 100
    for person in everyone.index[::40]:
        alone = scorer.score_many(*_own_history(history, person), as_of=as_of, person_ids=[person])
        assert len(alone) == 1
        row = alone.to_frame().set_index("person_id").loc[person]
        pd.testing.assert_series_equal(row, everyone.loc[person], check_exact=True)


def test_named_index_events_and_a_date_before_any_offence(scorer_and_history):
    scorer, history = scorer_and_history
    named = list(history[0]["event_id"][::3])
    scored = scorer.score_many(*history, as_of=pd.Timestamp("2030-01-01"), index_event_ids=named)
    assert len(scored) > 20 and set(scored["index_event_id"]) <= set(named)
    assert (scored["as_of"] == np.datetime64("2030-01-01")).all()
    assert len(scorer.score_many(*history, as_of=pd.Timestamp("1900-01-01"))) == 0
