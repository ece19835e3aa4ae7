"""Standardisers: each turns one raw field into the comparable form the linker reads.

Every function takes a pandas Series and returns a Series of plain strings aligned with it,
``""`` standing for missing. Work is done on the distinct values only (names repeat a lot), so
standardising a million mentions costs as much as standardising their few thousand names.
:func:`standardize_frame` applies them to a frame of canonical fields and adds the derived keys
(phonetic codes, initials, name tokens, date parts) that blocking and comparison use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from functools import cache

import jellyfish
import numpy as np
import pandas as pd

from ipvi.schema import MENTION_COLUMNS

MISSING = ""

# Generational suffixes removed from name fields and kept apart (they tell relatives apart).
SUFFIXES: frozenset[str] = frozenset({"jr", "sr", "ii", "iii", "iv", "v", "2nd", "3rd"})
# Surname particles glued to the next token so "de la cruz" and "delacruz" agree.
PARTICLES: frozenset[str] = frozenset({"de", "del", "la", "le", "van", "von", "da", "di", "mc"})
# Values that mean "not known" in agency extracts.
NULL_TOKENS: frozenset[str] = frozenset(
    {"", "na", "n/a", "none", "null", "unknown", "unk", "nan", "nat", "<na>", "?", "-"}
)
STREET_WORDS: dict[str, str] = {
    "street": "st",
    "avenue": "ave",
    "av": "ave",
    "road": "rd",
    "drive": "dr",
    "lane": "ln",
    "court": "ct",
    "place": "pl",
    "boulevard": "blvd",
    "circle": "cir",
    "highway": "hwy",
    "north": "n",
    "south": "s",
    "east": "e",
    "west": "w",
    "apartment": "apt",
    "suite": "ste",
}
# Date formats tried, in order, for dates of birth written as text.
DOB_FORMATS: tuple[str, ...] = (
    "%Y-%m-%d",
    "%Y%m%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%Y/%m/%d",
    "%d-%b-%Y",
    "%d.%m.%Y",
    "%m-%d-%Y",
    "%d %b %Y",
    "%b %d %Y",
)
_NON_ALNUM = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")
_NON_DIGIT = re.compile(r"\D+")


def on_distinct(values: pd.Series, function: Callable[[str], str]) -> pd.Series:
    """Apply a scalar ``function`` to each distinct value once and map the results back."""
    # Factorising the objects as they are (nulls get code -1) avoids a copy to a string dtype.
    codes, uniques = pd.factorize(values.to_numpy(dtype=object), sort=False)
    mapped = [function(value if isinstance(value, str) else str(value)) for value in uniques]
    mapped = np.array(mapped + [function(MISSING)], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)


def _ascii_lower(value: str) -> str:
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode("ascii")
    return text.lower().strip()


def clean_text(value: str) -> str:
    """Lower case, accents stripped, punctuation to spaces, null tokens to missing."""
    text = _ascii_lower(value)
    if text in NULL_TOKENS:
        return MISSING
    text = text.replace("'", "").replace("-", " ")
    return _SPACES.sub(" ", _NON_ALNUM.sub(" ", text)).strip()


def _name(value: str) -> str:
    tokens = [token for token in clean_text(value).split() if token not in SUFFIXES]
    glued: list[str] = []
    pending = ""
    for token in tokens:
        if token in PARTICLES:
            pending += token
        else:
            glued.append(pending + token)
            pending = ""
    if pending:
        glued.append(pending)
    return " ".join(glued)


def standardize_name(values: pd.Series) -> pd.Series:
    """A name: lower ASCII, no punctuation, hyphens split, suffixes dropped, particles glued.

    >>> standardize_name(pd.Series(["  José-Luis ", "O'Brien Jr.", "De la Cruz", None])).tolist()
    ['jose luis', 'obrien', 'delacruz', '']
    """
    return on_distinct(values, _name)


def _suffix(value: str) -> str:
    found = [token for token in clean_text(value).split() if token in SUFFIXES]
    return found[-1] if found else MISSING


def extract_suffix(values: pd.Series) -> pd.Series:
    """The generational suffix written inside a name field, if any ("Smith III" -> "iii")."""
    return on_distinct(values, _suffix)


def standardize_text(values: pd.Series) -> pd.Series:
    """Any free text compared as a generic string."""
    return on_distinct(values, clean_text)


def _street(value: str) -> str:
    return " ".join(STREET_WORDS.get(token, token) for token in clean_text(value).split())


def standardize_street(values: pd.Series) -> pd.Series:
    """A street address with the usual words abbreviated ("North Main Street" -> "n main st")."""
    return on_distinct(values, _street)


def _digits(value: str) -> str:
    return _NON_DIGIT.sub("", str(value))


def _phone(value: str) -> str:
    digits = _digits(value)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) < 7 or len(set(digits)) == 1:
        return MISSING
    return digits[-10:]


def standardize_phone(values: pd.Series) -> pd.Series:
    """A phone number as its last ten digits; a US country code and punctuation dropped.

    >>> standardize_phone(pd.Series(["(336) 555-0101", "1-336-555-0101", "000-0000"])).tolist()
    ['3365550101', '3365550101', '']
    """
    return on_distinct(values, _phone)


def _postal(value: str) -> str:
    text = _ascii_lower(value).upper()
    if text.lower() in NULL_TOKENS:
        return MISSING
    if re.fullmatch(r"\d+\.0", text):  # a number read as a float by a spreadsheet
        text = text[:-2]
    text = re.sub(r"[\s.]+", "", text)
    if re.fullmatch(r"\d{5}-?\d{4}", text):  # ZIP+4: the five-digit ZIP identifies the area
        return text[:5]
    return text


def standardize_zip(values: pd.Series) -> pd.Series:
    """Any postal code: upper case, spaces removed, a US ZIP+4 cut to its five digits.

    >>> standardize_zip(pd.Series(["27260-1234", "sw1a 1aa", "2119"])).tolist()
    ['27260', 'SW1A1AA', '2119']
    """
    return on_distinct(values, _postal)


def _ssn4(value: str) -> str:
    digits = _digits(value)
    if not digits or len(digits) > 4 or set(digits) == {"0"}:
        return MISSING
    return digits.zfill(4)


def standardize_ssn_last4(values: pd.Series) -> pd.Series:
    """The last four digits of an SSN, zero-padded; "0000" and longer values are missing."""
    return on_distinct(values, _ssn4)


def _sex(value: str) -> str:
    text = clean_text(value)
    return {"male": "m", "female": "f", "man": "m", "woman": "f", "u": MISSING}.get(text, text)


def standardize_sex(values: pd.Series) -> pd.Series:
    """Sex as any string, with male/female written out or as initials agreeing."""
    return on_distinct(values, _sex)


def _email(value: str) -> str:
    return clean_text(value) and str(value).strip().lower()


def standardize_email(values: pd.Series) -> pd.Series:
    """An e-mail address, lower case and trimmed."""
    return on_distinct(values, _email)


def _parse_date(value: str) -> str:
    text = str(value).strip()
    if text.lower() in NULL_TOKENS:
        return MISSING
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[ T].*", text):  # a timestamp: keep the date
        text = text[:10]
    for form in DOB_FORMATS:
        try:
            return datetime.strptime(text, form).strftime("%Y-%m-%d")
        except ValueError:
            continue
    # Unparseable (e.g. 02/30/1980): kept, compared as a string of its digits.
    return "?" + (_digits(text) or clean_text(text))


def standardize_dob(values: pd.Series) -> pd.Series:
    """A date of birth as ``YYYY-MM-DD``; an unparseable value kept as ``?`` + its digits.

    Dates and timestamps are read as their ISO text; text is tried against
    :data:`DOB_FORMATS` in order. Historic dates are kept: plausibility is ingest's business.

    >>> standardize_dob(pd.Series(["1980-03-04", "19800304", "03/04/1980", "02/30/1980"])).tolist()
    ['1980-03-04', '1980-03-04', '1980-03-04', '?02301980']
    """

    return on_distinct(values, _parse_date)


@cache
def _metaphone(value: str) -> str:
    return jellyfish.metaphone(value) if value else MISSING


def phonetic(values: pd.Series) -> pd.Series:
    """Metaphone code of the first token of a standardised name (Smith / Smyth agree)."""
    return on_distinct(values, _first_phonetic)


def nysiis(values: pd.Series) -> pd.Series:
    """NYSIIS code of a whole standardised name (spaces removed)."""
    return on_distinct(values, _whole_nysiis)


# --------------------------------------------------------------------------- the frame


# Canonical field -> the scalar standardiser behind its Series standardiser (used to standardise
# one record quickly, see standardize_record). Fields absent here are generic text.
SCALAR_STANDARDIZERS: dict[str, Callable[[str], str]] = {
    "first_name": _name,
    "middle_name": _name,
    "last_name": _name,
    "suffix": clean_text,
    "dob": _parse_date,
    "sex": _sex,
    "street": _street,
    "city": clean_text,
    "zip": _postal,
    "phone": _phone,
    "ssn_last4": _ssn4,
    "email": _email,
}

# Canonical field -> its standardiser. Fields absent here are compared as generic strings.
STANDARDIZERS: dict[str, Callable[[pd.Series], pd.Series]] = {
    "first_name": standardize_name,
    "middle_name": standardize_name,
    "last_name": standardize_name,
    "suffix": standardize_text,
    "dob": standardize_dob,
    "sex": standardize_sex,
    "street": standardize_street,
    "city": standardize_text,
    "zip": standardize_zip,
    "phone": standardize_phone,
    "ssn_last4": standardize_ssn_last4,
    "email": standardize_email,
}

# Fields a record may carry for linking: every standardised field, and a full name that
# standardize_frame splits into first / middle / last. ``ipvi dedupe --map`` accepts these.
CANONICAL_FIELDS: tuple[str, ...] = (*STANDARDIZERS, "full_name")

# The registry's mention columns the linker reads, in the order of ipvi.schema: the canonical
# fields a mention has, plus ``dob_raw`` (the unparsed date that fills a missing ``dob``).
# Race and ethnicity are no canonical field: the linker never reads them.
MENTION_LINK_FIELDS: tuple[str, ...] = tuple(
    column for column in MENTION_COLUMNS if column in CANONICAL_FIELDS or column == "dob_raw"
)


def _split_full_name(full: pd.Series) -> pd.DataFrame:
    """First / middle / last from "Last, First Middle" or "First Middle Last"."""
    text = full.fillna("").astype(str)
    comma = text.str.contains(",", regex=False)
    before = text.str.split(",", n=1).str[0]
    after = text.str.split(",", n=1).str[1].fillna("")
    words = text.str.split()
    after_words = after.str.split()
    first = np.where(comma, after_words.str[0], words.str[0])
    last = np.where(comma, before, words.str[-1])
    middle_plain = words.str[1:-1].str.join(" ")
    middle_comma = after_words.str[1:].str.join(" ")
    middle = np.where(comma, middle_comma, middle_plain)
    one_word = ~comma & (words.str.len() == 1)
    first = np.where(one_word, "", first)
    return pd.DataFrame(
        {"first_name": first, "middle_name": middle, "last_name": last}, index=full.index
    ).fillna("")


def standardize_frame(frame: pd.DataFrame, fields: list[str] | None = None) -> pd.DataFrame:
    """Standardise the canonical ``fields`` of ``frame`` and add derived keys.

    Parameters
    ----------
    frame : DataFrame
        Canonical fields (any subset); ``full_name`` is split into first / middle / last where
        those are absent or empty, and ``dob_raw`` fills a missing ``dob``.
    fields : list of str, optional
        The fields to keep; by default every column of ``frame``. A field without a
        standardiser of its own is treated as generic text.

    Returns
    -------
    DataFrame
        One column per field (plain strings, ``""`` for missing) plus the derived keys
        ``fn_phon``, ``ln_phon`` (metaphone), ``ln_nysiis``, ``fn_init``, ``ln_init``,
        ``name_key`` (the two phonetic codes sorted, so first/last swaps share it),
        ``fn_nick`` (the first name's nickname group), ``zip_area`` (ZIP3 / UK outward code),
        ``dob_year`` and ``dob_md`` (day and month sorted, so swaps share it).
    """
    fields = list(frame.columns) if fields is None else list(fields)
    frame = frame.copy()
    if "full_name" in frame.columns:
        parts = _split_full_name(frame["full_name"])
        for part in ("first_name", "middle_name", "last_name"):
            if part in frame.columns:
                current = frame[part].fillna("").astype(str).str.strip()
                frame[part] = frame[part].where(current != "", parts[part])
            else:
                frame[part] = parts[part]
            if part not in fields:
                fields.append(part)
        fields = [field for field in fields if field != "full_name"]
    if "dob_raw" in frame.columns and "dob" in frame.columns:
        frame["dob"] = frame["dob"].where(frame["dob"].notna(), frame["dob_raw"])
    out = pd.DataFrame(index=frame.index)
    for field in fields:
        if field in ("dob_raw",):
            continue
        standardizer = STANDARDIZERS.get(field, standardize_text)
        out[field] = standardizer(frame[field]) if field in frame.columns else MISSING
    if "last_name" in out.columns:
        # A suffix written inside the surname ("Smith Jr") still counts as the suffix.
        written = extract_suffix(frame["last_name"]) if "last_name" in frame.columns else None
        if written is not None:
            base = out["suffix"] if "suffix" in out.columns else pd.Series(MISSING, index=out.index)
            out["suffix"] = base.where(base != MISSING, written)
    _add_derived(out)
    return out


@cache
def _nickname_canonical() -> dict[str, str]:
    """Name -> a blocking key its nicknames and formal forms mostly share: the first, in
    alphabetical order, of the name and every name ``nicknames`` relates to it (Tom, Thom and
    Thomas -> thom). One key per name, so a few related names get different keys; the
    nickname comparison level still relates them."""
    from nicknames import NickNamer

    namer = NickNamer()
    key: dict[str, str] = {}
    for name in list(namer._nickname_lookup) + list(namer._canonical_lookup):
        key[name] = min(namer.canonicals_of(name) | namer.nicknames_of(name) | {name})
    return key


def _nickname_key(value: str) -> str:
    """The first token's nickname-group key (so Tom and Thomas block together)."""
    first = value.split(" ")[0]
    return _nickname_canonical().get(first, first) if first else MISSING


def postal_area(value: str) -> str:
    """A postcode's area: a US ZIP's first three digits, a UK outward code (all but the last
    three characters of a full postcode), else the code itself.

    >>> [postal_area(v) for v in ("27260", "SW1A1AA", "S118DQ", "2119", "")]
    ['272', 'SW1A', 'S11', '2119', '']
    """
    if value.isdigit() and len(value) >= 5:
        return value[:3]
    if len(value) >= 5 and value[-3].isdigit() and value[-2:].isalpha():
        return value[:-3]
    return value


def _first_phonetic(value: str) -> str:
    return _metaphone(value.split(" ")[0]) if value else MISSING


def _whole_nysiis(value: str) -> str:
    return jellyfish.nysiis(value.replace(" ", "")) if value else MISSING


def _initial(value: str) -> str:
    return value[:1]


def _year(value: str) -> str:
    return value[:4] if len(value) == 10 and not value.startswith("?") else MISSING


def _name_key(first_code: str, last_code: str) -> str:
    if not first_code or not last_code:
        return MISSING
    return "|".join(sorted((first_code, last_code)))


def _dob_md(value: str) -> str:
    if len(value) != 10 or value.startswith("?"):
        return MISSING
    month, day = value[5:7], value[8:10]
    return min(month, day) + max(month, day) + value[:4]


def _add_derived(out: pd.DataFrame) -> None:
    empty = pd.Series(MISSING, index=out.index, dtype=object)
    first = out["first_name"] if "first_name" in out.columns else empty
    last = out["last_name"] if "last_name" in out.columns else empty
    out["fn_phon"] = phonetic(first)
    out["ln_phon"] = phonetic(last)
    out["ln_nysiis"] = nysiis(last)
    out["fn_init"] = on_distinct(first, _initial)
    out["ln_init"] = on_distinct(last, _initial)
    first_code, last_code = out["fn_phon"], out["ln_phon"]
    in_order = first_code <= last_code
    low = first_code.where(in_order, last_code)
    high = last_code.where(in_order, first_code)
    both = (first_code != MISSING) & (last_code != MISSING)
    out["name_key"] = (low + "|" + high).where(both, MISSING)
    out["fn_nick"] = on_distinct(first, _nickname_key)
    postal = out["zip"] if "zip" in out.columns else empty
    out["zip_area"] = on_distinct(postal, postal_area)
    dob = out["dob"] if "dob" in out.columns else empty
    out["dob_year"] = on_distinct(dob, _year)
    out["dob_md"] = on_distinct(dob, _dob_md)


def standardize_record(mention: dict, fields: list[str]) -> dict[str, str]:
    """One mention standardised without pandas (the incremental linker's fast path).

    Gives the same values as :func:`standardize_frame` for the ``fields`` and derived keys.

    >>> out = standardize_record({"first_name": "Bob", "last_name": "Smith Jr", "dob": "19800304"},
    ...                          ["first_name", "last_name", "dob", "suffix"])
    >>> out["first_name"], out["suffix"], out["dob"], out["dob_md"], out["name_key"]
    ('bob', 'jr', '1980-03-04', '03041980', 'BB|SM0')
    """
    raw = {
        key: ("" if value is None or value != value else str(value))
        for key, value in mention.items()
    }
    if raw.get("full_name") and not (raw.get("first_name") or raw.get("last_name")):
        parts = _split_full_name(pd.Series([raw["full_name"]])).iloc[0]
        raw.update(parts.to_dict())
    if not raw.get("dob") and raw.get("dob_raw"):
        raw["dob"] = raw["dob_raw"]
    out = {
        field: SCALAR_STANDARDIZERS.get(field, clean_text)(raw.get(field, ""))
        if raw.get(field)
        else MISSING
        for field in fields
    }
    if not out.get("suffix") and raw.get("last_name"):
        out["suffix"] = _suffix(raw["last_name"])
    first, last = out.get("first_name", MISSING), out.get("last_name", MISSING)
    dob = out.get("dob", MISSING)
    out["fn_phon"], out["ln_phon"] = _first_phonetic(first), _first_phonetic(last)
    out["ln_nysiis"] = _whole_nysiis(last)
    out["fn_init"], out["ln_init"] = _initial(first), _initial(last)
    out["name_key"] = _name_key(out["fn_phon"], out["ln_phon"])
    out["fn_nick"] = _nickname_key(first)
    out["zip_area"] = postal_area(out.get("zip", MISSING))
    out["dob_year"], out["dob_md"] = _year(dob), _dob_md(dob)
    return out
