"""Identifiers, per-mention noise and the five agency formats of ``ingest.agencies``.

The formats (file names, column names, codes, date formats, full-name styles) are read from
the configuration's ingest mappings, so the extracts always parse with the declared formats.
Identifier noise is applied per mention and logged as a bit mask for the truth folder.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from synth import names as nm
from synth.params import NoiseParams
from synth.population import ACP_ADDRESS, GROUPS, address_slot, pick_slot

# One bit per kind of identifier noise, as logged in truth/records.csv.
NOISE_BITS: dict[str, int] = {
    "first_name_typo": 1,
    "nickname": 2,
    "last_name_typo": 4,
    "name_order_swap": 8,
    "dob_missing": 16,
    "dob_day_month_swap": 32,
    "dob_one_digit": 64,
    "dob_of_namesake": 128,
    "old_surname": 256,
    "new_surname": 512,
    "stale_address": 1024,
    "second_agency_id": 2048,
    "reused_agency_id": 4096,
    "double_surname_variant": 8192,
    "suffix_dropped": 16384,
    "case_ref_missing": 32768,
    "case_ref_garbled": 65536,
}

# Police codes are set here because two internal event types (incident report, call for
# service) share the canonical type "incident"; other agencies' codes come from the mapping.
_POLICE_EVENT_CODES = {"incident": "INC", "call": "CFS", "arrest": "ARR", "notification": "NOTIF"}
_POLICE_ROLE_CODES = {"suspect": "S", "arrestee": "A", "victim": "V"}
_BOOL_CODES = {
    "police": ("Y", "N"),
    "jail": ("Y", "N"),
    "court": ("1", "0"),
    "probation": ("Y", "N"),
}


def race_codes(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    """A person's recorded race code: Hispanic persons are recorded mostly as W or O."""
    n = len(group)
    base = np.array(["W", "B", "W", "A", "O"], dtype=object)[group]
    hisp = np.array(["W", "O", "B", "U"], dtype=object)[
        np.searchsorted([0.6, 0.9, 0.95], rng.random(n))
    ]
    other = np.where(rng.random(n) < 0.4, "I", "O")
    return np.where(
        group == GROUPS.index("hispanic"),
        hisp,
        np.where(group == GROUPS.index("other"), other, base),
    )


def unique_ids(rng: np.random.Generator, n: int, digits: int) -> np.ndarray:
    """``n`` distinct random integers with ``digits`` digits, in random order."""
    low, high = 10 ** (digits - 1), 10**digits
    return low + rng.choice(high - low, n, replace=False)


def namesakes(first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """For each person, another person with the same first and last name (-1 if none)."""
    key = pd.Series(first).astype(str) + "|" + pd.Series(last).astype(str)
    codes, _ = pd.factorize(key)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    nxt = np.roll(order, -1)
    same_next = np.roll(sorted_codes, -1) == sorted_codes
    # the first member of each group is the wrap-around partner of the last member
    group_start = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]
    first_of_group = order[group_start][np.cumsum(group_start) - 1]
    partner = np.where(same_next, nxt, first_of_group)
    out = np.full(len(first), -1)
    out[order] = np.where(partner == order, -1, partner)
    return out


def _one_digit(rng: np.random.Generator, y: np.ndarray, d: np.ndarray):
    """Change one digit of the year's last digit or of the day (keeping a valid day)."""
    which = rng.random(len(y)) < 0.5
    new_digit = (y % 10 + rng.integers(1, 10, len(y))) % 10
    y2 = np.where(which, y - y % 10 + new_digit, y)
    d_digit = (d % 10 + rng.integers(1, 10, len(d))) % 10
    d2 = np.where(which, d, np.clip(d - d % 10 + d_digit, 1, 28))
    d2 = np.where(~which & (d2 == d), np.where(d > 1, d - 1, d + 1), d2)
    return y2, d2


def identities(
    rng: np.random.Generator,
    rows: pd.DataFrame,
    people: pd.DataFrame,
    *,
    zips: np.ndarray,
    cities: np.ndarray,
    confidential: np.ndarray,
    noise: NoiseParams,
) -> pd.DataFrame:
    """Identifier columns of every mention, as recorded (with noise), and a noise bit mask.

    Returns a frame aligned with ``rows``: first, middle, last, suffix, dob (days since
    1970-01-01, or -1 when missing), sex, race, ethnicity, street, city, zip, phone, ssn4,
    confidential, agency_person_id and noise (bit mask, see :data:`NOISE_BITS`).
    """
    n = len(rows)
    p = rows["person"].to_numpy()
    when = rows["time"].to_numpy()
    victim_role = rows["role"].to_numpy() == "victim"
    bits = np.zeros(n, dtype=np.int64)
    u = rng.random((n, 21), dtype=np.float32)  # float32: a million mentions, half the memory

    def flag(mask: np.ndarray, name: str) -> None:
        nonlocal bits
        bits |= np.where(mask, NOISE_BITS[name], 0)

    # ---- names
    first = people["first"].to_numpy()[p].copy()
    nick_table = nm.nickname_table()
    has_nick = pd.Series(first).isin(list(nick_table)).to_numpy()
    nick = has_nick & (u[:, 0] < noise.nickname / max(has_nick.mean(), 1e-9))
    if nick.any():
        choices = [nick_table[name] for name in first[nick]]
        first[nick] = [c[int(x * len(c))] for c, x in zip(choices, u[nick, 1], strict=True)]
    flag(nick, "nickname")
    typo = u[:, 2] < noise.first_typo
    first[typo] = nm.typo(rng, first[typo])
    flag(typo, "first_name_typo")

    changed = when >= people["change_day"].to_numpy()[p]
    old_after = changed & (u[:, 3] < noise.old_surname_after_change)
    last = np.where(
        changed & ~old_after, people["last_new"].to_numpy()[p], people["last"].to_numpy()[p]
    )
    flag(changed & ~old_after, "new_surname")
    flag(old_after, "old_surname")
    # Double surnames ("GARCIA LOPEZ") are written in full, hyphenated, or shortened.
    double = np.char.find(last.astype(str), " ") > 0
    variant = np.searchsorted([0.5, 0.65, 0.95], u[:, 4])
    if double.any():
        parts = pd.Series(last[double]).str.split(" ", n=1, expand=True)
        v = variant[double]
        last[double] = np.select(
            [v == 0, v == 1, v == 2],
            [last[double], parts[0] + "-" + parts[1], parts[0]],
            parts[1],
        )
    flag(double & (variant > 0), "double_surname_variant")
    typo = u[:, 5] < noise.last_typo
    last[typo] = nm.typo(rng, last[typo])
    flag(typo, "last_name_typo")
    swap = u[:, 6] < noise.name_swap
    first, last = np.where(swap, last, first), np.where(swap, first, last)
    flag(swap, "name_order_swap")

    middle_full = people["middle"].to_numpy()[p]
    style = np.searchsorted([0.45, 0.8], u[:, 7])
    middle = np.select(
        [style == 0, style == 1], [middle_full, people["middle_initial"].to_numpy()[p]], ""
    )
    suffix = people["suffix"].to_numpy()[p]
    dropped = (suffix != "") & (u[:, 8] < 0.45)
    suffix = np.where(dropped, "", suffix)
    flag(dropped, "suffix_dropped")

    # ---- date of birth
    dob = people["dob"].to_numpy()[p].copy()
    mate = namesakes(people["first"].to_numpy(), people["last"].to_numpy())[p]
    borrowed = (mate >= 0) & (u[:, 9] < noise.namesake_dob)
    dob[borrowed] = people["dob"].to_numpy()[mate[borrowed]]
    flag(borrowed, "dob_of_namesake")
    date = pd.to_datetime(dob, unit="D")
    y, mo, d = date.year.to_numpy(), date.month.to_numpy(), date.day.to_numpy()
    swap = (u[:, 10] < noise.dob_swap / 0.37) & (d <= 12) & (d != mo)  # 37 % of dates swappable
    y2, d2 = _one_digit(rng, y, d)
    digit = ~swap & (u[:, 11] < noise.dob_digit)
    ny = np.where(digit, y2, y)
    nmo = np.where(swap, d, mo)
    nd = np.where(swap, mo, np.where(digit, d2, d))
    noisy = swap | digit
    if noisy.any():
        rebuilt = pd.to_datetime(
            pd.DataFrame({"year": ny[noisy], "month": nmo[noisy], "day": nd[noisy]}),
            errors="coerce",
        )
        dob[noisy] = np.where(
            rebuilt.isna(), dob[noisy], (rebuilt - pd.Timestamp(0)).dt.days.fillna(0)
        ).astype(np.int64)
    flag(swap, "dob_day_month_swap")
    flag(digit, "dob_one_digit")
    miss_rate = rows["agency"].map(noise.dob_missing).to_numpy(dtype=float)
    missing = u[:, 12] < miss_rate + noise.dob_missing_victim_extra * victim_role
    dob[missing] = -1
    flag(missing, "dob_missing")

    # ---- demographics (recorded codes, with some unknowns)
    sex = np.where(people["female"].to_numpy()[p], "F", "M")
    sex = np.where(u[:, 13] < 0.01, "U", sex)
    race = people["race_code"].to_numpy()[p]
    race = np.where(u[:, 14] < 0.04, "U", race)
    eth = np.where(people["group"].to_numpy()[p] == GROUPS.index("hispanic"), "H", "N")
    eth = np.where(u[:, 15] < 0.08, "U", eth)

    # ---- address and phone at the time of the event (sometimes an older one)
    slot = address_slot(people, p, when)
    stale = (slot > 0) & (u[:, 16] < noise.stale_address)
    slot = slot - stale
    flag(stale, "stale_address")
    nb = pick_slot(people, "nb", p, slot)
    # one string object per (person, address), shared by that person's mentions
    street = pick_slot(people, "address", p, slot)
    spelled_out = u[:, 17] < 0.1  # "ELM ST" written "ELM STREET"
    street[spelled_out] = pd.Series(street[spelled_out], dtype=object).str.replace(
        r" ST$", " STREET", regex=True
    )
    city = cities[nb]
    zip_code = np.where(u[:, 18] < 0.04, "", zips[nb])
    phone_digits = pick_slot(people, "phone", p, slot)
    area = people["area_code"].to_numpy()[p]
    phone = np.where(u[:, 19] < 0.4, -1, area * 10_000_000 + phone_digits)
    is_conf = confidential[p] & victim_role
    street = np.where(is_conf, ACP_ADDRESS[0], street)
    city = np.where(is_conf, ACP_ADDRESS[1], city)
    zip_code = np.where(is_conf, ACP_ADDRESS[2], zip_code)
    phone = np.where(is_conf, -1, phone)

    ssn = np.where(u[:, 20] < noise.ssn_missing, -1, people["ssn4"].to_numpy()[p])

    return pd.DataFrame(
        {
            "first": first,
            "middle": middle,
            "last": last,
            "suffix": suffix,
            "dob": dob,
            "sex": sex,
            "race": race,
            "ethnicity": eth,
            "street": street,
            "city": city,
            "zip": zip_code,
            "phone": phone,
            "ssn4": ssn,
            "confidential": is_conf,
            "noise": bits,
        }
    )


def agency_person_ids(
    rng: np.random.Generator, rows: pd.DataFrame, n_people: int, noise: NoiseParams
) -> tuple[np.ndarray, np.ndarray]:
    """Each agency's own person number (MNI, inmate id, ...): random, a few people with two,
    and a few numbers reused for a different person. Returns (ids, noise bits)."""
    out = np.zeros(len(rows), dtype=np.int64)
    bits = np.zeros(len(rows), dtype=np.int64)
    p = rows["person"].to_numpy()
    for i, agency in enumerate(("police", "jail", "court", "protective_orders", "probation")):
        m = (rows["agency"] == agency).to_numpy()
        ids = unique_ids(rng, 2 * n_people, 7 + i % 2)
        primary, second = ids[:n_people], ids[n_people:]
        reused = rng.random(n_people) < noise.reused_agency_id
        primary[reused] = primary[rng.integers(0, n_people, reused.sum())]
        two = rng.random(n_people) < noise.second_agency_id
        use_second = two[p[m]] & (rng.random(m.sum()) < 0.35)
        out[m] = np.where(use_second, second[p[m]], primary[p[m]])
        bits[m] = np.where(use_second, NOISE_BITS["second_agency_id"], 0) | np.where(
            reused[p[m]], NOISE_BITS["reused_agency_id"], 0
        )
    return out, bits


def case_refs(
    rng: np.random.Generator, case: np.ndarray, case_year: np.ndarray, noise: NoiseParams
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-agency case numbers like ``19CR004512``: some missing, some garbled.

    ``case_year`` is the year of each case (indexed by case number); ``case`` the case of each
    row (-1 for none).
    """
    numbers = unique_ids(rng, max(len(case_year), 1), 6)[: len(case_year)]
    yy = np.char.zfill((case_year % 100).astype(str), 2).astype(object)
    digits = np.char.zfill((numbers % 1_000_000).astype(str), 6).astype(object)
    per_case = yy + "CR" + digits
    u = rng.random((len(case), 2))
    missing = (case < 0) | (u[:, 0] < noise.case_ref_missing)
    garbled = ~missing & (u[:, 1] < noise.case_ref_garbled)
    ref = np.where(missing, "", per_case[np.maximum(case, 0)])
    g = case[garbled]
    kind = rng.integers(0, 3, len(g))
    d = pd.Series(digits[g], dtype=object)
    swapped = (d.str[:4] + d.str[5] + d.str[4]).to_numpy(dtype=object)
    ref[garbled] = np.select(
        [kind == 0, kind == 1],
        [yy[g] + "-" + digits[g], pd.Series(per_case[g], dtype=object).str.lower().to_numpy()],
        yy[g] + "CR" + swapped,
    )
    bits = np.where(missing & (case >= 0), NOISE_BITS["case_ref_missing"], 0) | np.where(
        garbled, NOISE_BITS["case_ref_garbled"], 0
    )
    return ref, bits


# --------------------------------------------------------------------------- formatting


class DateFormatter:
    """Formats float days (since the extract start) through lookup tables of unique values."""

    def __init__(self, epoch0: int) -> None:
        self.epoch0 = epoch0

    @staticmethod
    def _days(days: np.ndarray, fmt: str) -> np.ndarray:
        uniq, inverse = np.unique(days, return_inverse=True)
        text = pd.to_datetime(uniq, unit="D").strftime(fmt).to_numpy(dtype=object)
        return text[inverse]

    def dates(self, days: np.ndarray, fmt: str) -> np.ndarray:
        """Day-level dates (``days`` since the extract start, floored)."""
        return self._days(np.floor(days).astype(np.int64) + self.epoch0, fmt)

    def datetimes(self, days: np.ndarray, fmt: str) -> np.ndarray:
        """Date-time stamps: the date part and the clock part are looked up separately."""
        date_fmt, _, time_fmt = fmt.partition(" ")
        minutes = np.round(days * 1440).astype(np.int64)
        day, minute = np.divmod(minutes, 1440)
        clock = np.array(
            [
                (dt.datetime(2000, 1, 1) + dt.timedelta(minutes=int(x))).strftime(time_fmt)
                for x in range(1440)
            ],
            dtype=object,
        )
        return self._days(day + self.epoch0, date_fmt) + " " + clock[minute]

    def dobs(self, dob: np.ndarray, fmt: str) -> np.ndarray:
        """Dates of birth (days since 1970-01-01; -1 = missing -> empty)."""
        out = np.full(len(dob), "", dtype=object)
        ok = dob >= 0
        out[ok] = self._days(dob[ok], fmt)
        return out


def _phone_text(phone: np.ndarray, style: str) -> np.ndarray:
    out = np.full(len(phone), "", dtype=object)
    ok = phone >= 0
    s = pd.Series(phone[ok].astype(str))
    if style == "paren":
        text = "(" + s.str[:3] + ") " + s.str[3:6] + "-" + s.str[6:]
    elif style == "dash":
        text = s.str[:3] + "-" + s.str[3:6] + "-" + s.str[6:]
    else:
        text = s
    out[ok] = text.to_numpy(dtype=object)
    return out


def _full_name(ids: pd.DataFrame, style: str) -> np.ndarray:
    first, middle, last, suffix = (
        ids[c].astype(str) for c in ("first", "middle", "last", "suffix")
    )
    if style == "last_comma_first":
        text = (
            last
            + ", "
            + first
            + (" " + middle).where(middle != "", "")
            + (" " + suffix).where(suffix != "", "")
        )
        return text.str.upper().to_numpy(dtype=object)
    text = (
        first
        + (" " + middle).where(middle != "", "")
        + " "
        + last
        + (" " + suffix).where(suffix != "", "")
    )
    return text.str.title().to_numpy(dtype=object)


def format_agency(
    agency: str,
    rows: pd.DataFrame,
    mapping,
    dates: DateFormatter,
) -> pd.DataFrame:
    """The extract of one agency, in the columns, codes and formats of its ingest mapping.

    ``rows`` are that agency's mentions with their identifiers (see :func:`identities`), raw
    record/event ids and case refs (``raw_record_id``, ``raw_event_id``, ``raw_victim_id``,
    ``case_ref``, ``agency_person_id``).
    """
    ids = rows
    cols = mapping.columns
    values = mapping.values
    inverse = {field: {v: k for k, v in codes.items()} for field, codes in values.items()}
    time_fmt, dob_fmt = mapping.date_formats[0], mapping.dob_formats[0]
    out: dict[str, np.ndarray] = {}

    def put(field: str, data) -> None:
        if field in cols:
            out[cols[field]] = np.asarray(data, dtype=object)

    put("record_id", rows["raw_record_id"].astype(str))
    put("event_id", rows["raw_event_id"].astype(str))
    put("case_ref", rows["case_ref"])
    etype = rows["event_type"].to_numpy()
    if agency == "police":
        put("event_type", pd.Series(etype).map(_POLICE_EVENT_CODES))
        role = pd.Series(rows["role"]).map(_POLICE_ROLE_CODES).to_numpy(dtype=object)
        role = np.where((etype == "call") & (role == "S"), "N", role)
        put("role", role)
    else:
        put("event_type", pd.Series(etype).map(inverse["event_type"]))
        if "role" in cols:
            put("role", pd.Series(rows["role"]).map(inverse["role"]))
    put("agency_person_id", rows["agency_person_id"].astype(str))
    if mapping.full_name_format:
        put("full_name", _full_name(ids, mapping.full_name_format))
    else:
        last = ids["last"].to_numpy()
        if "suffix" not in cols:  # no suffix column: some clerks append it to the surname
            last = np.where(ids["suffix"] != "", last + " " + ids["suffix"], last)
        put("last_name", last)
        put("first_name", ids["first"])
        put("middle_name", ids["middle"])
        put("suffix", ids["suffix"])
    put("dob", dates.dobs(ids["dob"].to_numpy(), dob_fmt))
    put(
        "sex",
        pd.Series(ids["sex"]).map(
            {
                "M": inverse["sex"].get("male"),
                "F": inverse["sex"].get("female"),
                "U": inverse["sex"].get("unknown"),
            }
        ),
    )
    put("race", ids["race"])
    if "ethnicity" in cols:
        eth_codes = {
            "H": inverse["ethnicity"]["hispanic"],
            "N": inverse["ethnicity"]["non_hispanic"],
            "U": inverse["ethnicity"]["unknown"],
        }
        put("ethnicity", pd.Series(ids["ethnicity"]).map(eth_codes))
    put("street", ids["street"])
    put("city", ids["city"])
    put("zip", ids["zip"])
    style = {"police": "paren", "protective_orders": "dash"}.get(agency, "plain")
    put("phone", _phone_text(ids["phone"].to_numpy(), style))
    ssn = ids["ssn4"].to_numpy()
    put("ssn_last4", np.where(ssn >= 0, np.char.zfill(ssn.astype(str), 4), ""))
    yes, no = _BOOL_CODES.get(agency, ("Y", "N"))
    put("address_confidential", np.where(ids["confidential"], "Y", "N"))
    time = rows["time"].to_numpy()
    rec = rows["rec"].to_numpy()
    if " " in time_fmt:
        put("offense_date", dates.datetimes(time, time_fmt))
        put("recorded_at", dates.datetimes(rec, time_fmt))
    else:
        put("offense_date", dates.dates(time, time_fmt))
        put("recorded_at", dates.dates(rec, time_fmt))
    put("offense_code", rows["code"])
    if "ipv" in cols:
        put("ipv", np.where(rows["ipv"].to_numpy(dtype=bool), yes, no))
    for flag in ("weapon", "strangulation", "injury", "threat_to_kill", "children_present"):
        v = rows[flag].to_numpy()
        put(flag, np.select([v == 1, v == 0], [yes, no], ""))
    if "disposition" in cols:
        put("disposition", rows["disposition"])
    if "victim_record_id" in cols:
        put("victim_record_id", rows["raw_victim_id"])
    ordered = [c for c in cols.values() if c in out]
    return pd.DataFrame({c: out[c] for c in dict.fromkeys(ordered)})
