"""Versioned request and response schemas of the service (``/v1/...``), with their limits.

Limits protect the service from oversized input and are part of the contract: at most
:data:`MAX_EVENTS` events in one history, strings of at most :data:`MAX_STRING` characters,
and batches of 1 to ``serving.max_batch`` people (checked by the service, since it is
configurable). Every request model has a fixed synthetic example, written here in code, that is
shown in the OpenAPI document and succeeds against the demo data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

from ipvi.schema import DISPOSITIONS, EVENT_TYPES, ROLES

MAX_EVENTS = 500
MAX_STRING = 200
API_VERSION = "v1"

Text = Annotated[str, StringConstraints(max_length=MAX_STRING)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
]


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Answers carry explicit UTC offsets (RFC 3339); the registry stores naive UTC.
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]


MIN_YEAR, MAX_YEAR = 1900, 2099
# Dates the registry can hold, checked by pydantic-core itself (no Python validator per
# date); the pattern puts the range in the published schema.
RecordTime = Annotated[
    datetime,
    Field(ge=datetime(MIN_YEAR, 1, 1), lt=datetime(MAX_YEAR + 1, 1, 1)),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "pattern": "^(19|20)[0-9]{2}-"}, mode="validation"
    ),
]
Flag = Annotated[bool, Strict()]


class Schema(BaseModel):
    """Base of every request: unknown fields are errors, so typos are not silently ignored;
    strict types, so ``0`` is not ``false`` and a number is not a date; and validation errors
    never repeat the input, so no name or date of birth reaches a log."""

    model_config = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)


class ErrorResponse(BaseModel):
    """Every error answer: a message naming the field or id at fault."""

    error: str
    field: str | None = None


# --------------------------------------------------------------------------- decision


class DecisionRequest(Schema):
    """What staff decided for a person, recorded once per client ``decision_id``."""

    decision_id: Identifier = Field(
        description="Client-chosen id; sending the same decision again is a no-op."
    )
    person_id: Identifier = Field(
        description="Registry person id the registry holds now (a merged id is recorded under "
        "its survivor)."
    )
    action: Identifier = Field(
        description="One of the configured actions (serving.decision_actions)."
    )
    tier_decision: Literal["followed", "overridden"] = Field(
        description="Whether staff followed the rule tier or overrode it."
    )
    tier: Literal["A", "B", "C", "D"] | None = Field(
        default=None, description="The rule tier staff saw."
    )
    reason: Text | None = Field(
        default=None,
        description="Why, in at most 200 characters and without names or other identifiers "
        "(removed if the person is purged); required when the tier was overridden.",
    )
    advocate_contacted_before_notification: Flag | None = Field(
        default=None,
        description="Whether an advocate contacted the victim before an offender notification.",
    )
    decided_at: RecordTime | None = Field(
        default=None,
        description="When staff decided (defaults to when it was recorded); not in the future.",
    )


DECISION_EXAMPLE = {
    "decision_id": "demo-decision-0001",
    "person_id": "P000001",
    "action": "letter",
    "tier_decision": "followed",
    "tier": "D",
    "reason": "first reported incident, no charge",
    "advocate_contacted_before_notification": True,
}


class DecisionResponse(BaseModel):
    """The recorded decision; ``replayed`` is true when this ``decision_id`` was already stored."""

    decision_id: str
    person_id: str
    recorded_at: UtcDateTime
    replayed: bool
    warnings: list[str]
    model_version: str = Field(description="The model version the service was serving.")


# --------------------------------------------------------------------------- histories

# The canonical vocabularies of ipvi.schema, as enumerations in the OpenAPI document.
EventType = Literal[tuple(sorted(EVENT_TYPES))]
Role = Literal[tuple(sorted(ROLES))]
Disposition = Literal[tuple(sorted(DISPOSITIONS))]


class HistoryEvent(Schema):
    """One event of a person's history in the canonical event form, with the person's role."""

    event_id: Identifier
    agency: Identifier
    event_type: EventType
    role: Role = Field(description="The person's role in this event.")
    case_ref: Text | None = None
    offense_date: RecordTime = Field(description="When it happened.")
    recorded_at: RecordTime = Field(description="When the agency's record of it existed.")
    offense_code: Text | None = None
    ipv: Flag = False
    weapon: Flag = False
    strangulation: Flag = False
    injury: Flag = False
    threat_to_kill: Flag = False
    children_present: Flag = False
    disposition: Disposition | None = None
    victim_id: Identifier | None = Field(
        default=None,
        description="A pseudonymous id of the event's victim (the same id is the same victim).",
    )


class History(Schema):
    """A person's canonical history, sent inline (no registry lookup)."""

    person_id: Identifier = Field(
        description="The caller's pseudonymous id, echoed back: letters, digits, '_' and '-' "
        "only by default (serving.inline_person_id_pattern), never a name or a date."
    )
    dob: RecordTime | None = Field(default=None, description="Date of birth (for age).")
    events: list[HistoryEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class PeopleRequest(Schema):
    """People to assess as of a date: inline ``histories`` or registry ``person_ids``, exactly
    one of the two (the other absent or null; both or neither is a 422)."""

    as_of: RecordTime | None = Field(
        default=None, description="Decision date (default: now); a future date is refused (422)."
    )
    histories: list[History] | None = Field(
        default=None,
        min_length=1,
        description="Inline event histories; send these or person_ids, not both.",
    )
    person_ids: list[Identifier] | None = Field(
        default=None,
        min_length=1,
        description="Registry person ids (merged ids answer for their survivor); send these or "
        "histories, not both.",
    )


class ScoreRequest(PeopleRequest):
    """Score 1 to ``serving.max_batch`` people."""


class TierRequest(PeopleRequest):
    """Rule tiers (no model) for 1 to ``serving.max_batch`` people."""


def _example_history() -> dict:
    """A fixed synthetic person: two IPV incidents, a charge and a protective-order violation."""
    return {
        "person_id": "demo-person-1",
        "dob": "1988-04-12T00:00:00Z",
        "events": [
            {
                "event_id": "PD-DEMO-1",
                "agency": "police",
                "event_type": "incident",
                "role": "suspect",
                "case_ref": "DEMO-CASE-1",
                "offense_date": "2024-01-05T22:10:00Z",
                "recorded_at": "2024-01-06T08:00:00Z",
                "ipv": True,
                "injury": True,
                "victim_id": "demo-victim-1",
            },
            {
                "event_id": "CT-DEMO-1",
                "agency": "court",
                "event_type": "charge",
                "role": "defendant",
                "case_ref": "DEMO-CASE-1",
                "offense_date": "2024-01-05T00:00:00Z",
                "recorded_at": "2024-01-09T00:00:00Z",
                "offense_code": "14-33(d)",
                "ipv": True,
                "disposition": "pending",
            },
            {
                "event_id": "PO-DEMO-1",
                "agency": "protective_orders",
                "event_type": "protective_order",
                "role": "respondent",
                "offense_date": "2024-01-08T00:00:00Z",
                "recorded_at": "2024-01-09T00:00:00Z",
                "ipv": True,
                "victim_id": "demo-victim-1",
            },
            {
                "event_id": "PD-DEMO-2",
                "agency": "police",
                "event_type": "incident",
                "role": "suspect",
                "case_ref": "DEMO-CASE-2",
                "offense_date": "2024-03-02T19:30:00Z",
                "recorded_at": "2024-03-03T09:00:00Z",
                "ipv": True,
                "strangulation": True,
                "threat_to_kill": True,
                "victim_id": "demo-victim-1",
            },
        ],
    }


SCORE_EXAMPLE = {"as_of": "2024-03-06T00:00:00Z", "histories": [_example_history()]}
TIER_EXAMPLE = {"as_of": "2024-03-06T00:00:00Z", "histories": [_example_history()]}

SCORE_NOTE = (
    "Decision support only: read the probability next to the rule tier and the lethality "
    "markers. The band describes the likelihood of a recorded re-offence, not danger; "
    "no band means safe."
)


class TierReason(BaseModel):
    tier: str
    reason: str
    conditions: list[str]
    record_ids: list[str]
    weakest_link: float | None = None


class ReasonCode(BaseModel):
    feature: str
    text: str
    contribution: float
    record_ids: list[str]


class TierResult(BaseModel):
    """The rule tier of one person as of a date, with its reasons and lethality markers."""

    person_id: str
    id_status: Literal["inline", "current", "merged"]
    requested_id: str
    as_of: UtcDateTime
    index_event_id: str
    tier: str
    provisional: bool
    identity_review_required: bool
    possible_dual_arrest: bool
    tier_reasons: list[TierReason]
    lethality_flags: list[str]
    model_version: str = Field(description="The model version whose frozen tier rules were used.")
    linkage_run_id: str | None = None


class ScoreResult(TierResult):
    """A score next to the tier: probability, band, reasons, and every id it rests on."""

    score_id: str = Field(description="Stable for (person, as-of date, model version).")
    probability: float
    band: str
    band_use: str
    reason_codes: list[ReasonCode]
    model_name: str
    audit_id: str | None = None
    audit_status: str | None = Field(
        default=None, description="Status of the fairness audit that cleared the model."
    )
    mlflow_run_id: str | None = None
    note: str = SCORE_NOTE


class NotAssessed(BaseModel):
    """A person the service could not assess, and why."""

    person_id: str
    reason: str


class ScoreResponse(BaseModel):
    results: list[ScoreResult]
    not_scored: list[NotAssessed]
    model_name: str
    model_version: str
    warnings: list[str] = Field(
        default_factory=list,
        description="About every score of this answer. While the served model version's "
        "latest fairness re-audit on matured outcomes (`ipvi audit --issued`) has failed, one "
        "warning names that re-audit (its id and dates), until a later re-audit passes.",
    )


class TierResponse(BaseModel):
    results: list[TierResult]
    not_scored: list[NotAssessed]
    model_version: str


# --------------------------------------------------------------------------- link


class LinkRequest(Schema):
    """Identifiers of one person named in a new incident, for intake."""

    first_name: Text | None = None
    middle_name: Text | None = None
    last_name: Text | None = None
    suffix: Text | None = None
    dob: Text | None = Field(default=None, description="Date of birth as written (any format).")
    sex: Literal["female", "male", "unknown"] | None = None
    street: Text | None = None
    city: Text | None = None
    zip: Text | None = None
    phone: Text | None = None
    ssn_last4: Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")] | None = None


LINK_EXAMPLE = {
    "first_name": "Jordan",
    "last_name": "Sample",
    "dob": "1988-04-12",
    "sex": "male",
    "city": "High Point",
    "zip": "27260",
}


class LinkCandidate(BaseModel):
    """A registry person that may be the one named: how likely, and which fields agree how."""

    person_id: str
    match_probability: float
    agreement: dict[str, str] = Field(
        default_factory=dict,
        description="Per compared field, the agreement level (never the stored value).",
    )


class LinkResponse(BaseModel):
    """Candidates, best first; ``person_id`` is the best one when it clears the threshold."""

    person_id: str | None
    candidates: list[LinkCandidate]
    linkage_run_id: str | None
    model_version: str = Field(description="The model version the service was serving.")
