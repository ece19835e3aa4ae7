"""Standardisers: each a small function with its own cases."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from linkage import standardize as s
from linkage.compare import nickname_pairs


def series(*values):
    return pd.Series(list(values), dtype=object)


def test_names_lose_case_accents_punctuation_and_suffixes():
    out = s.standardize_name(series("  José-Luis ", "O'Brien Jr.", "SMITH III", None, "N/A"))
    assert out.tolist() == ["jose luis", "obrien", "smith", "", ""]


def test_surname_particles_are_glued():
    out = s.standardize_name(series("De la Cruz", "DELACRUZ", "van der Berg"))
    assert out.tolist()[:2] == ["delacruz", "delacruz"]


def test_suffix_is_extracted_from_the_surname():
    frame = s.standardize_frame(pd.DataFrame({"last_name": ["Smith Jr", "Jones"]}))
    assert frame["suffix"].tolist() == ["jr", ""]
    assert frame["last_name"].tolist() == ["smith", "jones"]


def test_full_name_is_split_in_both_orders():
    frame = s.standardize_frame(
        pd.DataFrame({"full_name": ["GARCIA LOPEZ, MARIA E", "John Q Public"]})
    )
    assert frame["first_name"].tolist() == ["maria", "john"]
    assert frame["last_name"].tolist() == ["garcia lopez", "public"]
    assert frame["middle_name"].tolist() == ["e", "q"]


def test_nickname_group_postal_area_and_swap_key():
    frame = s.standardize_frame(
        pd.DataFrame(
            {
                "first_name": ["Tom", "Thomas", "Thom"],
                "last_name": ["Garcia-Lopez", "Smith", "Tom"],
                "zip": ["SW1A 1AA", "27260-1234", ""],
            }
        )
    )
    assert frame["fn_nick"].nunique() == 1
    assert frame["zip_area"].tolist() == ["SW1A", "272", ""]
    frame = s.standardize_frame(
        pd.DataFrame({"first_name": ["Maria", "Garcia"], "last_name": ["Garcia-Lopez", "Maria"]})
    )
    # NYSIIS of the first surname token, so swapped names share the sorted name key
    assert frame["name_key"].iat[0] == frame["name_key"].iat[1]


def test_dates_of_birth_from_many_formats_and_unparseable_kept():
    out = s.standardize_dob(
        series(
            "1980-03-04",
            "19800304",
            "03/04/1980",
            "04-Mar-1980",
            dt.date(1980, 3, 4),
            "02/30/1980",
            None,
        )
    )
    assert out.tolist()[:5] == ["1980-03-04"] * 5
    assert out.iat[5] == "?02301980"
    assert out.iat[6] == ""


def test_historic_dates_are_kept():
    assert s.standardize_dob(series("1850-07-01")).tolist() == ["1850-07-01"]


def test_day_month_swap_key_agrees():
    frame = s.standardize_frame(pd.DataFrame({"dob": ["1980-03-04", "1980-04-03", "1980-03-05"]}))
    assert frame["dob_md"].iat[0] == frame["dob_md"].iat[1] != frame["dob_md"].iat[2]


def test_phone_zip_ssn_sex_email():
    assert s.standardize_phone(series("(336) 555-0101", "+1 336 555 0101", "5")).tolist() == [
        "3365550101",
        "3365550101",
        "",
    ]
    assert s.standardize_zip(series("27260-1234", "sw1a 1aa", "2119", "27260.0")).tolist() == [
        "27260",
        "SW1A1AA",
        "2119",
        "27260",
    ]
    assert s.standardize_ssn_last4(series("123", "0000", "12345", "6789")).tolist() == [
        "0123",
        "",
        "",
        "6789",
    ]
    assert s.standardize_sex(series("Male", "F", "unknown", "x")).tolist() == ["m", "f", "", "x"]
    assert s.standardize_email(series(" A.B@Example.org ")).tolist() == ["a.b@example.org"]


def test_street_words_abbreviated():
    assert s.standardize_street(series("12 North Main Street")).tolist() == ["12 n main st"]


def test_nickname_pairs_cover_both_directions_and_shared_canonicals():
    related = nickname_pairs()
    assert "bob|robert" in related and "robert|bob" in related
    assert "bob|rob" in related
    assert "bob|mary" not in related


def test_phonetic_codes_agree_on_spelling_variants():
    assert s.phonetic(series("smith")).iat[0] == s.phonetic(series("smyth")).iat[0]
    codes = s.phonetic(series("catherine", "kathryn"))
    assert codes.iat[0] == codes.iat[1]


def test_link_fields_are_the_mention_columns_that_are_canonical_fields():
    from ipvi.schema import MENTION_COLUMNS
    from linkage.dedupe import parse_mapping

    assert set(s.MENTION_LINK_FIELDS) <= set(MENTION_COLUMNS)
    assert list(s.MENTION_LINK_FIELDS) == [c for c in MENTION_COLUMNS if c in s.MENTION_LINK_FIELDS]
    assert set(s.MENTION_LINK_FIELDS) - set(s.CANONICAL_FIELDS) == {"dob_raw"}
    assert {"race", "ethnicity", "record_id"}.isdisjoint(s.MENTION_LINK_FIELDS)
    # every canonical field can be mapped by `ipvi dedupe`
    mapping = ",".join(f"{field}=c{k}" for k, field in enumerate(s.CANONICAL_FIELDS))
    assert list(parse_mapping(mapping)[0]) == list(s.CANONICAL_FIELDS)
