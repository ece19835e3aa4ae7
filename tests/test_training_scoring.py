"""The tier-only path (:func:`training.scoring.tier_index`, ``RiskScorer.tier_many``) answers
exactly what the scoring path answers for the same people, on generated histories; and the
scoring path answers the same on :class:`~ipvi.columns.Columns` (the service's tables) as on
DataFrames (training's)."""

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


def test_columns_answer_exactly_what_frames_answer(scorer_and_history):
    scorer, history = scorer_and_history
    events = history[0]
    columns = [Columns.from_frame(frame) for frame in history]
    for as_of, index_event_ids in (
        (pd.Timestamp(events["recorded_at"].max()), None),
        (pd.Timestamp(events["offense_date"].quantile(0.6)), None),
        (pd.Timestamp("2030-01-01"), list(events["event_id"].iloc[::3])),
    ):
        kwargs = {"as_of": as_of, "index_event_ids": index_event_ids}
        framed = scorer.score_many(*history, **kwargs)
        columned = scorer.score_many(*columns, **kwargs)
        assert isinstance(columned, Columns) and len(columned) == len(framed) > 20
        pd.testing.assert_frame_equal(columned.to_frame(), framed, check_exact=True)
        tiered = scorer.tier_many(*columns, as_of=as_of)
        pd.testing.assert_frame_equal(
            tiered.to_frame(), scorer.tier_many(*history, as_of=as_of), check_exact=True
        )
    nobody = scorer.score_many(*columns, as_of=pd.Timestamp("1900-01-01"))
    assert isinstance(nobody, Columns) and nobody.empty


def test_columns_lists_are_python_values():
    table = Columns(
        {
            "when": np.array(["2024-05-01T10:00", "NaT"], dtype="datetime64[ns]"),
            "score": np.array([0.25, np.nan]),
            "reasons": [["a", "b"], []],
            "ok": np.array([True, False]),
        }
    )
    values = table.lists()
    assert values == {
        "when": [pd.Timestamp("2024-05-01T10:00").to_pydatetime(), None],
        "score": [0.25, None],
        "reasons": [["a", "b"], []],
        "ok": [True, False],
    }
    assert type(values["ok"][0]) is bool and type(values["score"][0]) is float
    with pytest.raises(ValueError, match="different lengths"):
        Columns({"a": [1, 2], "b": [1]})
