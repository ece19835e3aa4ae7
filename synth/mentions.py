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


def generate_mentions(
    n_mentions: int, mentions_per_person: float = 4.0, seed: int = 0, profile: str | None = None
):
    """Canonical mentions and the true person of each.

    ``profile`` (one of :data:`PROFILES`) changes the error model away from the default,
    so that linkage is measured on worlds unlike the one its defaults grew up in; the default
    mentions are the same with or without this option's existence (a profile draws from its
    own random stream).

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
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    profile_rng = np.random.default_rng([seed, 1])
    if profile is not None:
        person = _PERSON_PROFILES.get(profile, _unchanged)(person, profile_rng, first_pool)

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
    if profile is not None:
        mentions = _MENTION_PROFILES.get(profile, _unchanged)(mentions, m, profile_rng, nick_of)
    truth = pd.Series(
        [f"T{p:08d}" for p in m["person"]], index=mentions["record_id"], name="person_id"
    )
    return mentions, truth


# ------------------------------------------------------------------ noise profiles


def _unchanged(frame, *_):
    return frame


def _lookalike_persons(person: pd.DataFrame, rng, first_pool) -> pd.DataFrame:
    """Households: a third of the persons are relatives of another one (same surname,
    address, phone; another first name), some twins (same date of birth), some Jr/Sr (same
    first name, born about 25 years apart)."""
    person = person.copy()
    n = len(person)
    relative = np.flatnonzero(rng.random(n) < 0.35)
    relative = relative[relative > 0]
    anchor = rng.integers(0, relative, len(relative))  # an earlier person
    for column in ("last", "street", "zip", "phone"):
        person.loc[relative, column] = person[column].to_numpy()[anchor]
    kind = rng.random(len(relative))
    twins, junior = kind < 0.3, (kind >= 0.3) & (kind < 0.55)
    person.loc[relative, "first"] = rng.choice(first_pool, len(relative))
    person.loc[relative[twins], "dob"] = person["dob"].to_numpy()[anchor[twins]]
    person["suffix"] = ""
    person.loc[relative[junior], "first"] = person["first"].to_numpy()[anchor[junior]]
    person.loc[relative[junior], "sex"] = person["sex"].to_numpy()[anchor[junior]]
    person.loc[relative[junior], "dob"] = person["dob"].to_numpy()[
        anchor[junior]
    ] + pd.to_timedelta(rng.integers(20 * 365, 32 * 365, int(junior.sum())), unit="D")
    person.loc[relative[junior], "suffix"] = "jr"
    person.loc[anchor[junior], "suffix"] = "sr"
    return person


def _lookalike_mentions(mentions, m, rng, nick_of):
    mentions = mentions.copy()
    written = rng.random(len(mentions)) < 0.7
    mentions["suffix"] = np.where(written, m["suffix"].to_numpy(), "")
    return mentions


_UK_AREAS = np.array(["S", "SW", "M", "LS", "B", "L", "NE", "BS", "CF", "EH", "G", "YO", "NG"])
_UK_TOWNS = np.array(
    ["sheffield", "london", "manchester", "leeds", "birmingham", "liverpool", "newcastle",
     "bristol", "cardiff", "edinburgh", "glasgow", "york", "nottingham"]
)  # fmt: skip


def _uk_postcodes(rng, area: np.ndarray, district: np.ndarray, size: int) -> np.ndarray:
    letters = np.array(list("ABDEFGHJLNPQRSTUWXYZ"))
    inward = (
        rng.integers(0, 10, size).astype(str)
        + rng.choice(letters, size).astype(object)
        + rng.choice(letters, size).astype(object)
    )
    return _UK_AREAS[area] + district.astype(str) + " " + inward


def _uk_historical_persons(person, rng, first_pool):
    person = person.copy()
    n = len(person)
    person["dob"] = pd.Timestamp("1800-01-01") + pd.to_timedelta(
        rng.integers(0, 100 * 365, n), unit="D"
    )
    person["area"] = rng.integers(0, len(_UK_AREAS), n)
    person["district"] = rng.integers(1, 30, n)
    person["zip"] = _uk_postcodes(rng, person["area"].to_numpy(), person["district"].to_numpy(), n)
    return person


def _uk_historical_mentions(mentions, m, rng, nick_of):
    """UK postcodes (a move keeps the district, a third of the time the whole code), towns,
    and dates of birth before 1900."""
    mentions = mentions.copy()
    n = len(mentions)
    zip_ = m["zip"].to_numpy(dtype=object).copy()
    moved = rng.random(n) < 0.2
    fresh = _uk_postcodes(rng, m["area"].to_numpy(), m["district"].to_numpy(), n)
    zip_[moved] = fresh[moved]
    keep_missing = mentions["zip"].isna().to_numpy()
    mentions["zip"] = np.where(keep_missing, None, zip_)
    mentions["city"] = _UK_TOWNS[m["area"].to_numpy()]
    return mentions


def _dob_error_mentions(mentions, m, rng, nick_of):
    """A third of dates of birth written wrong in every way: one digit, day and month
    swapped, the month or year off, or a wholly different date."""
    mentions = mentions.copy()
    n = len(mentions)
    true = m["dob"].reset_index(drop=True)
    text = mentions["dob"].to_numpy(dtype=object).copy()
    hit = np.flatnonzero((rng.random(n) < 0.33) & pd.notna(text))
    kind = rng.integers(0, 5, len(hit))
    for i, k in zip(hit, kind, strict=True):
        date = true[i]
        if k == 0:  # one digit
            value = date.strftime("%Y-%m-%d")
            position = int(rng.choice([2, 3, 6, 9]))
            text[i] = value[:position] + str(rng.integers(0, 10)) + value[position + 1 :]
        elif k == 1 and date.day <= 12:
            text[i] = f"{date.year}-{date.day:02d}-{date.month:02d}"
        elif k == 2:
            text[i] = (date + pd.DateOffset(months=int(rng.choice([-1, 1])))).strftime("%Y-%m-%d")
        elif k == 3:
            text[i] = (date + pd.DateOffset(years=int(rng.integers(1, 11)))).strftime("%Y-%m-%d")
        else:
            text[i] = (date + pd.to_timedelta(rng.integers(-20000, 20000), unit="D")).strftime(
                "%Y-%m-%d"
            )
    mentions["dob"] = text
    return mentions


def _nickname_mentions(mentions, m, rng, nick_of):
    """Nicknames in 40 % of mentions, first and last names swapped in 12 %, initials in 8 %."""
    mentions = mentions.copy()
    n = len(mentions)
    first = mentions["first_name"].to_numpy(dtype=object).copy()
    last = mentions["last_name"].to_numpy(dtype=object).copy()
    canonical = m["first"].to_numpy()
    for i in np.flatnonzero(rng.random(n) < 0.4):
        options = nick_of.get(canonical[i])
        if options:
            first[i] = rng.choice(options)
    swap = rng.random(n) < 0.12
    first[swap], last[swap] = last[swap], first[swap].copy()
    initial = (rng.random(n) < 0.08) & ~swap
    first[initial] = [str(v)[:1] for v in first[initial]]
    mentions["first_name"], mentions["last_name"] = first, last
    return mentions


_TRANSLITERATIONS = [
    ("ph", "f"), ("ks", "x"), ("y", "i"), ("ou", "u"), ("kh", "h"), ("ee", "i"),
    ("oo", "u"), ("sch", "sh"), ("w", "v"), ("c", "k"), ("j", "y"), ("a", "ah"),
]  # fmt: skip


def _compound_persons(person, rng, first_pool):
    person = person.copy()
    n = len(person)
    double = rng.random(n) < 0.4
    second = person["last"].sample(frac=1.0, random_state=int(rng.integers(1 << 30))).to_numpy()
    person.loc[double, "last"] = person.loc[double, "last"] + " " + second[double]
    return person


def _compound_mentions(mentions, m, rng, nick_of):
    """Double surnames written hyphenated, joined, or one part only; names transliterated
    (ph / f, ks / x, y / i, ...) in a third of the mentions."""
    mentions = mentions.copy()
    n = len(mentions)
    last = mentions["last_name"].to_numpy(dtype=object).copy()
    full = m["last"].to_numpy(dtype=object)
    compound = np.array([" " in str(v) for v in full])
    form = rng.integers(0, 5, n)
    for i in np.flatnonzero(compound):
        parts = str(full[i]).split(" ")
        last[i] = [" ".join(parts), "-".join(parts), "".join(parts), parts[0], parts[-1]][form[i]]
    first = mentions["first_name"].to_numpy(dtype=object).copy()
    for values in (first, last):
        for i in np.flatnonzero(rng.random(n) < 0.33):
            a, b = _TRANSLITERATIONS[rng.integers(len(_TRANSLITERATIONS))]
            if rng.random() < 0.5:
                a, b = b, a
            values[i] = str(values[i]).replace(a, b)
    mentions["first_name"], mentions["last_name"] = first, last
    return mentions


def _missing_mentions(mentions, m, rng, nick_of):
    """Every identifying field missing in 30-60 % of the mentions."""
    mentions = mentions.copy()
    for column in IDENTIFIER_FIELDS:
        rate = rng.uniform(0.3, 0.6)
        mentions.loc[rng.random(len(mentions)) < rate, column] = None
    return mentions


_OCCUPATIONS = np.array(
    ["labourer", "clerk", "nurse", "teacher", "driver", "farmer", "mechanic", "cook", "cashier",
     "electrician", "carpenter", "student", "retired", "unemployed", "sales assistant"]
)  # fmt: skip


def _generic_mentions(mentions, m, rng, nick_of):
    """Generic columns of every kind: the house number apart from the street, a free-text
    occupation (with typos), a nearly constant state and city."""
    mentions = mentions.copy()
    n = len(mentions)
    street = mentions["street"].astype("string")
    mentions["street_number"] = street.str.split(" ", n=1).str[0].astype(object)
    mentions["street"] = street.str.split(" ", n=1).str[1].astype(object)
    occupation = _OCCUPATIONS[m["person"].to_numpy() % len(_OCCUPATIONS)]
    changed = rng.random(n) < 0.2
    occupation = np.where(changed, rng.choice(_OCCUPATIONS, n), occupation)
    mentions["occupation"] = _typo(rng, occupation, 0.1)
    mentions["state"] = np.where(rng.random(n) < 0.98, "NC", rng.choice(["VA", "SC", "GA"], n))
    mentions["city"] = np.where(
        rng.random(n) < 0.95, "high point", rng.choice(["greensboro", "thomasville"], n)
    )
    return mentions


_PERSON_PROFILES = {
    "lookalikes": _lookalike_persons,
    "uk_historical": _uk_historical_persons,
    "compound_names": _compound_persons,
}
_MENTION_PROFILES = {
    "lookalikes": _lookalike_mentions,
    "uk_historical": _uk_historical_mentions,
    "dob_errors": _dob_error_mentions,
    "nicknames": _nickname_mentions,
    "compound_names": _compound_mentions,
    "missing": _missing_mentions,
    "generic_columns": _generic_mentions,
}
# Noise profiles unlike the default error model (see generate_mentions).
PROFILES: tuple[str, ...] = tuple(_MENTION_PROFILES)
