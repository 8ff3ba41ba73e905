"""Redactors: personal data becomes a tag; look-alikes (bad check digits, years) stay."""

from __future__ import annotations

import pytest

from inhouse.audit.redact import Redactor, iban_ok, luhn_ok
from inhouse.errors import InvalidRequest

ALL = ["email", "phone", "card", "iban", "national_id"]


def redact(text: str, names: list[str] = ALL, patterns: tuple[str, ...] = ()) -> str:
    return Redactor(names, patterns).redact(text)


@pytest.mark.parametrize(
    "address", ["jane.doe@example.com", "j+tag@mail.example.co.uk", "X_Y-z@sub-domain.org"]
)
def test_emails_are_redacted(address: str) -> None:
    assert redact(f"write to {address}, please") == "write to [EMAIL], please"


@pytest.mark.parametrize("text", ["a @ b", "user@localhost", "see @mention", "x@y.z"])
def test_non_emails_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "number",
    [
        "4111 1111 1111 1111",  # Visa test number, in groups
        "4111-1111-1111-1111",
        "5555555555554444",  # Mastercard test number, in one run
        "378282246310005",  # Amex, 15 digits
        "6011 0009 9013 9424",
    ],
)
def test_cards_passing_luhn_are_redacted(number: str) -> None:
    assert redact(f"card: {number}.") == "card: [CARD]."


@pytest.mark.parametrize(
    "number", ["4111 1111 1111 1112", "5555555555554445", "1234-5678-9012-3456"]
)
def test_card_shaped_numbers_failing_luhn_stay(number: str) -> None:
    assert redact(f"order {number}") == f"order {number}"


def test_luhn() -> None:
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


@pytest.mark.parametrize(
    "iban",
    ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR14 2004 1010 0505 0001 3M02 606"],
)
def test_valid_ibans_are_redacted(iban: str) -> None:
    assert redact(f"pay to {iban} today") == "pay to [IBAN] today"


def test_an_iban_followed_by_a_capital_word_keeps_the_word() -> None:
    assert redact("IBAN DE89 3704 0044 0532 0130 00 OK") == "IBAN [IBAN] OK"


@pytest.mark.parametrize("text", ["DE88 3704 0044 0532 0130 00", "GB82WEST12345698765433"])
def test_ibans_with_wrong_check_digits_stay(text: str) -> None:
    assert "[IBAN]" not in redact(text)
    assert not iban_ok(text.replace(" ", ""))


@pytest.mark.parametrize(
    "phone",
    [
        "+1 555 123 4567",
        "+44 20 7946 0958",
        "+33 6 12 34 56 78",
        "0044 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "020 7946 0958",
        "06 12 34 56 78",
        "0612345678",
    ],
)
def test_phone_numbers_are_redacted(phone: str) -> None:
    assert redact(f"call {phone} now") == "call [PHONE] now"


@pytest.mark.parametrize(
    "text",
    [
        "in 2024 we grew",
        "between 2019 2020 2021 2022",
        "it costs 1,234,567,890 dollars",
        "ask 192.168.100.200",
        "pi is 3.14159265358979",
        "order 123456789",
        "call 112 or 555-1234",
        "on 2024-01-15 at 10:30",
    ],
)
def test_years_short_numbers_and_look_alikes_are_not_phones(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize("ssn", ["123-45-6789", "078-05-1120"])
def test_us_social_security_numbers_are_redacted(ssn: str) -> None:
    assert redact(f"SSN {ssn}.") == "SSN [NATIONAL_ID]."


@pytest.mark.parametrize("text", ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567"])
def test_impossible_ssns_are_not_national_ids(text: str) -> None:
    assert "[NATIONAL_ID]" not in redact(text)


@pytest.mark.parametrize("nino", ["AB 12 34 56 C", "AB123456C", "ab123456c"])
def test_uk_national_insurance_numbers_are_redacted(nino: str) -> None:
    assert redact(f"NI {nino}") == "NI [NATIONAL_ID]"


@pytest.mark.parametrize("text", ["GB123456A", "QQ123456E", "AB123456Z"])
def test_invalid_ninos_stay(text: str) -> None:
    assert redact(text) == text


def test_everything_at_once() -> None:
    text = (
        "Jane (jane@example.com, +1 555 123 4567) paid with 4111 1111 1111 1111 "
        "from DE89 3704 0044 0532 0130 00; SSN 123-45-6789; 2024 was a good year."
    )
    assert redact(text) == (
        "Jane ([EMAIL], [PHONE]) paid with [CARD] from [IBAN]; SSN [NATIONAL_ID]; "
        "2024 was a good year."
    )


def test_only_the_configured_redactors_run() -> None:
    text = "jane@example.com 4111 1111 1111 1111"
    assert redact(text, ["card"]) == "jane@example.com [CARD]"
    assert redact(text, []) == text


def test_custom_patterns_are_redacted() -> None:
    text = "ticket EMP-004211 by jane@example.com"
    assert redact(text, ["email"], (r"EMP-\d{6}",)) == "ticket [REDACTED] by [EMAIL]"


def test_a_custom_pattern_that_can_match_nothing_inserts_nothing() -> None:
    assert redact("abc", [], ("x*",)) == "abc"


def test_an_invalid_regex_is_refused_clearly() -> None:
    with pytest.raises(InvalidRequest, match=r"'\(unclosed' is not a valid regular expression"):
        Redactor([], ["(unclosed"])


def test_an_unknown_redactor_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidRequest, match="unknown redactor 'passport'; known: card, email"):
        Redactor(["email", "passport"])
