"""Redactors run on prompt and response text before it is logged: personal data becomes a tag.

Built-ins (`email`, `card`, `iban`, `national_id`, `phone`) run in that order whatever order
they are configured in, so a card or IBAN is never half-eaten as a phone number; numbers only
count as cards or IBANs when their check digits are right. Custom patterns run first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from inhouse.errors import InvalidRequest

Replace = Callable[[re.Match[str]], str]

EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])"
)
# 13-19 digits, optionally grouped by single spaces or dashes, not glued to other digits
CARD = re.compile(r"(?<![\w+])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?!\w|[ -]\d)")
# country, check digits, then the account: printed in groups of four, or in one run
IBAN = re.compile(
    r"(?<!\w)[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?!\w)"
)
SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
NINO = re.compile(
    r"(?<!\w)(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)",
    re.IGNORECASE,
)
PHONE = re.compile(
    r"""
    (?<![\w+.,@/-])
    (?:(?:\+|00)\d{1,3}[ .-]?)?      # country code
    (?:\(\d{1,5}\)[ .-]?)?           # area code in brackets
    \d{1,12}(?:[ .-]\d{1,5}){0,6}    # the number, maybe in groups
    (?![\w@]|[.,-]\d)
    """,
    re.VERBOSE,
)
IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
PHONE_DIGITS = (9, 15)  # E.164 allows at most 15; fewer than 9 is a short code, a year, a count


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn check that card numbers carry."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """Whether an IBAN without spaces passes its ISO 13616 mod-97 check."""
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group())
    return "[CARD]" if luhn_ok(digits) else match.group()


def _iban(match: re.Match[str]) -> str:
    """A valid IBAN, or a valid one followed by a word the grouped form took in with it."""
    text = match.group()
    while True:
        if iban_ok(text.replace(" ", "")):
            return "[IBAN]" + match.group()[len(text) :]
        cut = text.rfind(" ")
        if cut < 0:
            return match.group()
        text = text[:cut]


def _phone(match: re.Match[str]) -> str:
    text = match.group()
    digits = sum(c.isdigit() for c in text)
    if not PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]:
        return text
    return "[PHONE]" if _looks_like_phone(text) else text


def _looks_like_phone(text: str) -> bool:
    """Telephone shapes: a +/00 prefix, an (area) code, a 0-led run, or grouped digits that
    are not an IPv4 address nor a list of four-digit numbers (years)."""
    if text.startswith(("+", "00", "(")):
        return True
    groups = re.split(r"[ .-]", text)
    if len(groups) == 1:
        return text.startswith("0")
    if IPV4.fullmatch(text):
        return False
    return not all(len(g) == 4 for g in groups)


def _tag(tag: str) -> Replace:
    # an empty match (a custom pattern like `x*`) must not insert a tag between characters
    return lambda m: tag if m.group() else ""


BUILTINS: dict[str, list[tuple[re.Pattern[str], Replace]]] = {
    "email": [(EMAIL, _tag("[EMAIL]"))],
    "card": [(CARD, _card)],
    "iban": [(IBAN, _iban)],
    "national_id": [(SSN, _tag("[NATIONAL_ID]")), (NINO, _tag("[NATIONAL_ID]"))],
    "phone": [(PHONE, _phone)],
}


class Redactor:
    """Replaces personal data found by the named built-ins and the custom patterns."""

    def __init__(self, names: Sequence[str], patterns: Sequence[str] = ()) -> None:
        unknown = [name for name in names if name not in BUILTINS]
        if unknown:
            raise InvalidRequest(
                f"unknown redactor {unknown[0]!r}; known: {', '.join(sorted(BUILTINS))}",
                param="ledger.redactors",
            )
        self._steps: list[tuple[re.Pattern[str], Replace]] = [
            (_compile(p), _tag("[REDACTED]")) for p in patterns
        ]
        for name in BUILTINS:  # the built-ins' own order, not the configured one
            if name in names:
                self._steps.extend(BUILTINS[name])

    def redact(self, text: str) -> str:
        """`text` with every match replaced by its tag ([EMAIL], [CARD], ..., [REDACTED])."""
        for pattern, replace in self._steps:
            text = pattern.sub(replace, text)
        return text


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidRequest(
            f"redact pattern {pattern!r} is not a valid regular expression: {exc}",
            param="ledger.redact_patterns",
        ) from None
