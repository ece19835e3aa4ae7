"""Synthetic canonical mentions with known persons, for linkage tests and scale benchmarks.

Not the project's sample generator (``synth``): a fast, vectorised source of mentions at
any size (10 to millions) with the errors agencies make: typos, nicknames, first/last swaps,
compound and changed surnames, day/month swaps, digit slips, missing fields, moves. First names
come from the ``nicknames`` package's canonical names; surnames are built from syllables with
Zipf-like frequencies (shared surnames are common, so term frequencies matter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The identifying fields of every generated mention (besides record_id, race and ethnicity).
IDENTIFIER_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_name",
    "last_name",
    "dob",
    "sex",
    "ssn_last4",
    "street",
    "city",
    "zip",
    "phone",
)

RACES = np.array(["white", "black", "hispanic_white", "asian", "other"])
RACE_SHARES = np.array([0.45, 0.35, 0.12, 0.05, 0.03])
_SYLLABLE_TEXT = "an ar ber bro ca car da del ed el fer gar ha har jo ka kin la lo mar mc mi mo"
_SYLLABLES = (
    _SYLLABLE_TEXT + " na ne ni or pa per ra ri ro sa san son ta ter to va vel wa"
).split()
_ENDINGS = ["", "s", "son", "er", "ez", "ton", "ley", "man", "ski", "o", "a", "ford"]
_STREETS = ["main st", "oak ave", "elm st", "pine rd", "maple dr", "cedar ln", "hill ct", "park pl"]


def _first_names(rng: np.random.Generator) -> tuple[np.ndarray, dict[str, list[str]]]:
    from nicknames import NickNamer

    namer = NickNamer()
    names = sorted(
        namer.canonical_lookup().keys()
        if callable(namer.canonical_lookup)
        else namer.canonical_lookup
    )
    names = np.array([n for n in names if n.isalpha() and 3 <= len(n) <= 10])
    nick_of = {}
    for name in names:
        nicks = sorted(n for n in namer.nicknames_of(name) if n.isalpha())
        if nicks:
            nick_of[name] = nicks
    return names, nick_of


def _surnames(rng: np.random.Generator, n: int) -> np.ndarray:
    first = rng.choice(_SYLLABLES, n)
    second = rng.choice(_SYLLABLES, n)
    ending = rng.choice(_ENDINGS, n)
    return np.unique(np.char.add(np.char.add(first, second), ending))


def _zipf_choice(rng, pool: np.ndarray, size: int, exponent: float = 1.1) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(pool) + 1) ** exponent
    return pool[rng.choice(len(pool), size, p=weights / weights.sum())]


def _typo(rng, values: np.ndarray, rate: float) -> np.ndarray:
    """Replace, drop or transpose one character in about ``rate`` of the values."""
    out = values.astype(object).copy()
    hit = np.flatnonzero((rng.random(len(out)) < rate) & (np.char.str_len(values.astype(str)) > 3))
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    for i in hit:
        text = out[i]
        k = rng.integers(1, len(text) - 1)
        kind = rng.integers(3)
        if kind == 0:
            out[i] = text[:k] + rng.choice(letters) + text[k + 1 :]
        elif kind == 1:
            out[i] = text[:k] + text[k + 1 :]
        else:
            out[i] = text[: k - 1] + text[k] + text[k - 1] + text[k + 1 :]
    return out


def generate_mentions(n_mentions: int, mentions_per_person: float = 4.0, seed: int = 0):
    """Canonical mentions and the true person of each.

    Returns
    -------
    mentions : DataFrame
        ``record_id`` and canonical fields (strings; ``dob`` as ``YYYY-MM-DD`` or garbled),
        plus ``race`` / ``ethnicity`` for evaluation by group.
    truth : Series
        record_id -> true person id.
    """
    rng = np.random.default_rng(seed)
    n_persons = max(1, int(n_mentions / mentions_per_person))
    first_pool, nick_of = _first_names(rng)
    last_pool = _surnames(rng, max(2000, n_persons // 3))
    rng.shuffle(first_pool)
    rng.shuffle(last_pool)

    race = RACES[rng.choice(len(RACES), n_persons, p=RACE_SHARES)]
    person = pd.DataFrame(
        {
            "person": np.arange(n_persons),
            "first": _zipf_choice(rng, first_pool, n_persons, 0.9),
            "middle": _zipf_choice(rng, first_pool, n_persons, 0.9),
            "last": _zipf_choice(rng, last_pool, n_persons, 0.8),
            "sex": rng.choice(["male", "female"], n_persons, p=[0.8, 0.2]),
            "dob": pd.Timestamp("1950-01-01")
            + pd.to_timedelta(rng.integers(0, 365 * 55, n_persons), unit="D"),
            "ssn": rng.integers(1, 10000, n_persons),
            "zip": rng.integers(27000, 27400, n_persons),
            "street": np.char.add(
                np.char.add(rng.integers(1, 9999, n_persons).astype(str), " "),
                rng.choice(_STREETS, n_persons),
            ),
            "phone": rng.integers(2002000000, 9899999999, n_persons),
            "race": race,
        }
    )
    hispanic = race == "hispanic_white"
    second = _zipf_choice(rng, last_pool, int(hispanic.sum()), 0.8)
    person.loc[hispanic, "last"] = person.loc[hispanic, "last"] + " " + second
    person["race"] = np.where(hispanic, "white", race)
    person["ethnicity"] = np.where(hispanic, "hispanic", "non_hispanic")

    counts = 1 + rng.poisson(mentions_per_person - 1, n_persons)
    owner = np.repeat(np.arange(n_persons), counts)[:n_mentions]
    if len(owner) < n_mentions:
        owner = np.r_[owner, rng.integers(0, n_persons, n_mentions - len(owner))]
    m = person.iloc[owner].reset_index(drop=True)
    n = len(m)
    first = _typo(rng, m["first"].to_numpy(), 0.05)
    nick = rng.random(n) < 0.06
    for i in np.flatnonzero(nick):
        options = nick_of.get(m["first"].iat[i])
        if options:
            first[i] = rng.choice(options)
    last = _typo(rng, m["last"].to_numpy(), 0.05)
    compound = np.char.find(m["last"].to_numpy().astype(str), " ") > 0
    short = compound & (rng.random(n) < 0.3)  # one surname of a double surname only
    last[short] = m["last"].str.split(" ").str[0].to_numpy()[short]
    hyphen = compound & ~short & (rng.random(n) < 0.3)
    last[hyphen] = np.char.replace(last[hyphen].astype(str), " ", "-")
    swap = rng.random(n) < 0.02
    first[swap], last[swap] = last[swap], first[swap].copy()

    dob = m["dob"]
    text = dob.dt.strftime("%Y-%m-%d").to_numpy().astype(object)
    day_month = (rng.random(n) < 0.02) & (dob.dt.day <= 12).to_numpy()
    text[day_month] = (
        dob[day_month].dt.strftime("%Y-")
        + dob[day_month].dt.strftime("%d")
        + "-"
        + dob[day_month].dt.strftime("%m")
    ).to_numpy()
    slip = rng.random(n) < 0.03
    years = (dob.dt.year + rng.choice([-1, 1], n)).astype(str)
    text[slip] = (years + dob.dt.strftime("-%m-%d")).to_numpy()[slip]
    mentions = pd.DataFrame(
        {
            "record_id": [f"M-{i:08d}" for i in range(n)],
            "first_name": first,
            "middle_name": np.where(rng.random(n) < 0.5, m["middle"].str[:1], m["middle"]),
            "last_name": last,
            "dob": text,
            "sex": m["sex"].to_numpy(),
            "ssn_last4": np.char.zfill(m["ssn"].to_numpy().astype(str), 4),
            "street": m["street"].to_numpy(),
            "city": "high point",
            "zip": m["zip"].astype(str).to_numpy(),
            "phone": m["phone"].astype(str).to_numpy(),
            "race": m["race"].to_numpy(),
            "ethnicity": m["ethnicity"].to_numpy(),
        }
    )
    moved = rng.random(n) < 0.2
    mentions.loc[moved, "street"] = np.char.add(
        np.char.add(rng.integers(1, 9999, int(moved.sum())).astype(str), " "),
        rng.choice(_STREETS, int(moved.sum())),
    )
    mentions.loc[moved, "zip"] = rng.integers(27000, 27400, int(moved.sum())).astype(str)
    for column, rate in (
        ("middle_name", 0.4),
        ("dob", 0.05),
        ("ssn_last4", 0.6),
        ("street", 0.15),
        ("zip", 0.15),
        ("phone", 0.6),
    ):
        mentions.loc[rng.random(n) < rate, column] = None
    truth = pd.Series(
        [f"T{p:08d}" for p in m["person"]], index=mentions["record_id"], name="person_id"
    )
    return mentions, truth
