"""The people: neighbourhoods, offenders, their partners, names, dates of birth, addresses.

Everything is drawn as numpy arrays (one entry per person) so that a million mentions cost
seconds, not minutes. Times are float days since the start of the extract period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synth import names as nm
from synth.params import NoiseParams

# Race/ethnicity groups used to draw people; the extract codes are derived from them.
GROUPS = ("white", "black", "hispanic", "asian", "other")
GROUP_SHARES = np.array([0.40, 0.34, 0.22, 0.02, 0.02])
HISPANIC = GROUPS.index("hispanic")
N_NEIGHBOURHOODS = 24
MAX_ADDRESSES = 4

_CITIES = ("HIGH POINT", "HIGH POINT", "HIGH POINT", "JAMESTOWN", "THOMASVILLE", "ARCHDALE")
_STREETS = (
    "MAIN ST",
    "ELM ST",
    "OAK AVE",
    "WASHINGTON ST",
    "LEXINGTON AVE",
    "ENGLISH RD",
    "BRENTWOOD ST",
    "GREEN DR",
    "CHESTNUT DR",
    "KIVETT DR",
    "WENDOVER AVE",
    "EASTCHESTER DR",
    "FAIRFIELD RD",
    "GORDON RD",
    "MONTLIEU AVE",
    "PARK ST",
    "HAMILTON ST",
    "CENTENNIAL ST",
    "WARD AVE",
    "BURTON AVE",
    "GRANVILLE ST",
    "NATHAN HUNT DR",
    "CEDROW DR",
    "TRINITY AVE",
    "HARTLEY DR",
    "JOHNSON ST",
    "UNIVERSITY PKWY",
    "SKEET CLUB RD",
    "BALLINGER RD",
    "TAYLOR AVE",
    "COLONIAL DR",
    "RUSSELL AVE",
    "OLIVE ST",
    "PERSHING ST",
    "WILLOWBROOK DR",
    "FIELDCREST AVE",
)
# Address-confidentiality program substitute address (NC ACP), used instead of a real one.
ACP_ADDRESS = ("PO BOX 29622", "RALEIGH", "27626")


@dataclass
class Neighbourhoods:
    """Zip, city, racial composition and police presence of each neighbourhood."""

    zip: np.ndarray
    city: np.ndarray
    composition: np.ndarray  # (neighbourhood, group) -> share
    size: np.ndarray
    presence: np.ndarray  # standardised police presence (drives recording)


def make_neighbourhoods(rng: np.random.Generator, segregation: float) -> Neighbourhoods:
    """Neighbourhoods whose composition moves from the city's mix to one group with ``segregation``.

    Police presence follows the minority share (plus noise), so with segregation > 0 it
    correlates with race; with segregation 0 it is independent of race.
    """
    dominant = np.array([0] * 9 + [1] * 8 + [2] * 5 + [-1] * 2)
    rng.shuffle(dominant)
    onehot = np.zeros((N_NEIGHBOURHOODS, len(GROUPS)))
    for i, group in enumerate(dominant):
        onehot[i] = GROUP_SHARES if group < 0 else np.eye(len(GROUPS))[group]
    composition = (1 - segregation) * GROUP_SHARES + segregation * onehot
    size = rng.uniform(0.6, 1.4, N_NEIGHBOURHOODS)  # relative population
    minority = composition[:, 1] + composition[:, 2]
    signal = (minority - minority.mean()) / (minority.std() + 1e-9) if segregation > 0 else 0.0
    presence = 0.85 * signal + 0.55 * rng.standard_normal(N_NEIGHBOURHOODS)
    presence = (presence - presence.mean()) / presence.std()
    zips = rng.choice(np.arange(27201, 27299), N_NEIGHBOURHOODS, replace=False).astype(str)
    city = np.array(_CITIES, dtype=object)[rng.integers(0, len(_CITIES), N_NEIGHBOURHOODS)]
    return Neighbourhoods(zips.astype(object), city, composition, size, presence)


def draw_neighbourhood(
    rng: np.random.Generator, nbs: Neighbourhoods, group: np.ndarray
) -> np.ndarray:
    """A neighbourhood for each person, given their group: P(nb | group) ∝ size * share."""
    weights = nbs.size[:, None] * nbs.composition  # (nb, group)
    cdf = np.cumsum(weights / weights.sum(axis=0), axis=0)  # per group over nbs
    u = rng.random(len(group))
    return np.minimum((u[:, None] > cdf[:, group].T).sum(axis=1), N_NEIGHBOURHOODS - 1)


def _first_names(rng: np.random.Generator, female: np.ndarray, hispanic: np.ndarray) -> np.ndarray:
    n = len(female)
    out = np.where(female, nm.draw(rng, nm.FEMALE_FIRST, n), nm.draw(rng, nm.MALE_FIRST, n))
    hisp = np.where(
        female, nm.draw(rng, nm.HISPANIC_FEMALE_FIRST, n), nm.draw(rng, nm.HISPANIC_MALE_FIRST, n)
    )
    # Most Hispanic persons carry a Spanish given name, some an English one.
    return np.where(hispanic & (rng.random(n) < 0.8), hisp, out)


def make_people(
    rng: np.random.Generator,
    *,
    female: np.ndarray,
    group: np.ndarray,
    dob: np.ndarray,
    nbs: Neighbourhoods,
    end_day: float,
    noise: NoiseParams,
) -> pd.DataFrame:
    """Identities for people of given sex, group and date of birth (days since 1970-01-01).

    Returns one row per person: names (with a possible surname change for women), suffix,
    SSN-4, and an address history of up to ``MAX_ADDRESSES`` slots (move times, neighbourhood,
    street, phone).
    """
    n = len(female)
    hispanic = group == HISPANIC
    first = _first_names(rng, female, hispanic)
    middle_pool = _first_names(rng, female, hispanic)
    has_middle = rng.random(n) < 0.7
    middle = np.where(has_middle, middle_pool, "")
    # Compound given names ("JOSE LUIS") keep their second part as the middle name.
    compound = np.char.find(first.astype(str), " ") > 0
    if compound.any():
        parts = pd.Series(first[compound]).str.split(" ", n=1, expand=True)
        first[compound] = parts[0].to_numpy(dtype=object)
        middle[compound] = parts[1].to_numpy(dtype=object)
    last = nm.draw_surnames(rng, n, rare_share=0.35)
    hisp_last = nm.draw(rng, nm.HISPANIC_SURNAMES, n)
    second = nm.draw(rng, nm.HISPANIC_SURNAMES, n)
    double = hispanic & (rng.random(n) < 0.55)
    last = np.where(hispanic, hisp_last, last)
    last = np.where(double, last + " " + second, last)

    # Surname change for some women (marriage, divorce), sometimes hyphenated.
    change = female & (rng.random(n) < noise.surname_change_women)
    change_day = np.where(change, rng.uniform(0, end_day, n), np.inf)
    new_last = nm.draw_surnames(rng, n, rare_share=0.35)
    hyphen = rng.random(n) < noise.hyphenate_on_change
    first_surname = pd.Series(last).str.split(" ").str[0].to_numpy(dtype=object)
    new_last = np.where(hyphen, first_surname + "-" + new_last, new_last)
    new_last = np.where(change, new_last, last)

    # Address history: moves at a Poisson rate over the period.
    moves = np.minimum(rng.poisson(noise.moves_per_year * end_day / 365.0, n), MAX_ADDRESSES - 1)
    move_day = np.sort(rng.uniform(0, end_day, (n, MAX_ADDRESSES)), axis=1)
    move_day[:, 0] = -np.inf
    move_day[np.arange(MAX_ADDRESSES)[None, :] > moves[:, None]] = np.inf
    nb = np.stack([draw_neighbourhood(rng, nbs, group) for _ in range(MAX_ADDRESSES)], axis=1)
    street = rng.integers(0, len(_STREETS), (n, MAX_ADDRESSES))
    house = rng.integers(100, 4999, (n, MAX_ADDRESSES))
    phone = rng.integers(2000000, 9999999, (n, MAX_ADDRESSES))
    keep_phone = rng.random((n, MAX_ADDRESSES)) < 0.5
    for k in range(1, MAX_ADDRESSES):
        phone[:, k] = np.where(keep_phone[:, k], phone[:, k - 1], phone[:, k])

    people = pd.DataFrame(
        {
            "female": female,
            "group": group,
            "dob": dob.astype(np.int64),
            "first": first,
            "middle": middle,
            "last": last,
            "last_new": new_last,
            "change_day": change_day,
            "suffix": "",
            "ssn4": rng.integers(0, 10000, n),
            "area_code": np.where(rng.random(n) < 0.8, 336, 743),
        }
    )
    streets = np.array(_STREETS, dtype=object)
    for k in range(MAX_ADDRESSES):
        people[f"move{k}"] = move_day[:, k]
        people[f"nb{k}"] = nb[:, k]
        people[f"address{k}"] = house[:, k].astype(str).astype(object) + " " + streets[street[:, k]]
        people[f"phone{k}"] = phone[:, k]
    return people


def address_slot(people: pd.DataFrame, person: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Index of the address each person had on ``day`` (vectorised over mentions)."""
    moves = people[[f"move{k}" for k in range(MAX_ADDRESSES)]].to_numpy()[person]
    return (moves <= day[:, None]).sum(axis=1) - 1


def pick_slot(people: pd.DataFrame, column: str, person: np.ndarray, slot: np.ndarray):
    """The value of ``column<slot>`` for each (person, slot)."""
    table = people[[f"{column}{k}" for k in range(MAX_ADDRESSES)]].to_numpy()
    return table[person, slot]


def pair_juniors(
    rng: np.random.Generator, people: pd.DataFrame, candidates: np.ndarray, share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Make father/son namesakes: same first, middle, last name and address, JR/SR suffixes.

    ``share`` of the candidates end up in a pair. The junior's date of birth becomes the
    senior's plus 19-30 years. Returns the (senior, junior) row indices.
    """
    n_pairs = int(round(share * len(candidates) / 2))
    if n_pairs == 0:
        return np.array([], dtype=int), np.array([], dtype=int)
    chosen = rng.choice(candidates, 2 * n_pairs, replace=False)
    senior, junior = chosen[:n_pairs], chosen[n_pairs:]
    copy_cols = ["first", "middle", "last", "last_new", "group"] + [
        f"{c}{k}" for c in ("move", "nb", "address", "phone") for k in range(MAX_ADDRESSES)
    ]
    people.loc[junior, copy_cols] = people.loc[senior, copy_cols].to_numpy()
    gap = rng.uniform(19 * 365.25, 30 * 365.25, n_pairs).astype(np.int64)
    people.loc[senior, "dob"] = people.loc[junior, "dob"].to_numpy() - gap
    people.loc[senior, "suffix"] = "SR"
    people.loc[junior, "suffix"] = "JR"
    return senior, junior
