"""Identifier checks against values worked out by hand / published examples."""

from __future__ import annotations

import polars as pl
import pytest

from expectations.identifiers import (
    icd10_canonical,
    icd10_canonical_expr,
    icd10_valid_expr,
    nhs_check_digit,
    nhs_number_is_valid,
    nhs_number_valid_expr,
    snomed_is_valid,
    snomed_valid_expr,
    verhoeff_is_valid,
)
from expectations.pseudonymise import pseudonymise, pseudonymise_one


def test_nhs_check_digit_by_hand():
    # 943476591: 9*10+4*9+3*8+4*7+7*6+6*5+5*4+9*3+1*2 = 299; 299 % 11 = 2; 11 - 2 = 9
    assert nhs_check_digit("943476591") == 9
    # 4*10=40, 0*9=0, 1*8=8, 0*7=0, 2*6=12, 3*5=15, 2*4=8, 1*3=3, 3*2=6 -> 92; 92 % 11 = 4; 11 - 4 = 7
    assert nhs_check_digit("401023213") == 7
    # 000000006: 6*2 = 12; 12 % 11 = 1; 11 - 1 = 10 -> no valid check digit exists
    assert nhs_check_digit("000000006") is None
    # remainder 0 -> check digit 0: 000000000
    assert nhs_check_digit("000000000") == 0


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("9434765919", True),
        ("4010232137", True),
        ("9434765918", False),  # wrong check digit
        ("943476591", False),  # 9 digits
        ("94347659190", False),  # 11 digits
        ("943476591X", False),
        ("0000000060", False),  # check digit would be 10
        (None, False),
    ],
)
def test_nhs_number_scalar_and_vectorised_agree(value, valid):
    assert nhs_number_is_valid(value) is valid
    frame = pl.DataFrame({"n": [value]}, schema={"n": pl.String})
    assert frame.select(nhs_number_valid_expr("n")).item() is valid


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        ("22298006", True),  # myocardial infarction
        ("38341003", True),  # hypertensive disorder
        ("73211009", True),  # diabetes mellitus
        ("217082002", True),  # accidental fall
        ("1084961000000105", True),  # eFI score observable (UK extension)
        ("217082003", False),  # check digit changed
        ("12345", False),  # too short
        ("1234567890123456789", False),  # too long
        ("21708200A", False),
        (None, False),
    ],
)
def test_snomed(code, valid):
    assert snomed_is_valid(code) is valid
    frame = pl.DataFrame({"c": [code]}, schema={"c": pl.String})
    assert frame.select(snomed_valid_expr("c")).item() is valid


def test_verhoeff_wikipedia_example():
    # Wikipedia's worked example: the check digit for 236 is 3.
    assert verhoeff_is_valid("2363")
    assert not verhoeff_is_valid("2364")


@pytest.mark.parametrize(
    ("raw", "canonical", "valid"),
    [
        ("W19", "W19", True),
        ("W19X", "W19", True),
        ("W19.9", "W199", True),
        ("w199", "W199", True),
        (" I63X ", "I63", True),
        ("W19-", "W19", True),
        ("R2689", "R2689", True),
        ("9W1", "9W1", False),
        ("W1", "W1", False),
        ("", "", False),
    ],
)
def test_icd10_canonical(raw, canonical, valid):
    assert icd10_canonical(raw) == canonical
    frame = pl.DataFrame({"c": [raw]}).with_columns(k=icd10_canonical_expr("c"))
    assert frame["k"][0] == canonical
    assert frame.select(icd10_valid_expr("k")).item() is valid


def test_pseudonymise_is_keyed_stable_and_vectorised():
    import hashlib
    import hmac

    expected = hmac.new(b"k1", b"9434765919", hashlib.sha256).hexdigest()[:16]
    assert pseudonymise_one("9434765919", b"k1") == expected
    assert pseudonymise_one("9434765919", b"k2") != expected
    out = pseudonymise(pl.Series(["9434765919", "4010232137", "9434765919", None]), b"k1")
    assert out.to_list()[0] == out.to_list()[2] == expected
    assert out.to_list()[1] != expected
    assert out.to_list()[3] is None


def test_pseudonymise_reuses_known_pseudonyms_and_computes_the_rest():
    """Ingest hands the residents' pseudonyms to every event source: the same ids as computing each one
    afresh, and nobody missing when an event names someone the known map lacks."""
    import hashlib
    import hmac

    def by_hand(nhs: str) -> str:
        return hmac.new(b"k1", nhs.encode(), hashlib.sha256).hexdigest()[:16]

    known = pl.DataFrame({"person_id": [by_hand("9434765919")], "nhs_number": ["9434765919"]})
    events = pl.Series(["4010232137", "9434765919", None, "9434765919"])
    out = pseudonymise(events, b"k1", known)
    assert out.to_list() == [by_hand("4010232137"), by_hand("9434765919"), None, by_hand("9434765919")]
    assert out.to_list() == pseudonymise(events, b"k1").to_list()
    # The known map is used as given (it was made with the same key in the same ingest), not recomputed.
    marked = pl.DataFrame({"person_id": ["from-the-map"], "nhs_number": ["9434765919"]})
    assert pseudonymise(events, b"k1", marked).to_list()[1] == "from-the-map"


@pytest.mark.parametrize("key", [b"k1", b"x" * 64, bytes(range(200)), b"bench-key-not-secret", b""])
def test_pseudonyms_of_many_people_are_python_hmac_digit_for_digit(key):
    """``pseudonymise`` computes HMAC-SHA256 from the padded key's SHA-256 states (made once per key): for keys
    shorter than, equal to and longer than SHA-256's 64-byte block, every pseudonym must be ``hmac.new``'s."""
    import hashlib
    import hmac

    numbers = [f"{9_000_000_000 + 7_919 * i}" for i in range(2_000)] + ["", "943 476 5919", "\u00e9"]
    out = pseudonymise(pl.Series(numbers), key).to_list()
    assert out == [hmac.new(key, n.encode(), hashlib.sha256).hexdigest()[:16] for n in numbers]
