"""Personal data out of text: emails, phone numbers, payment card numbers (Luhn-checked) and
IBANs (mod-97-checked) replaced by a placeholder. Pure functions, no state; the score
outputs (`--redact`), the errors file and the CLI's log lines use them, and a report can
call `redact_row` on every row it renders.

    >>> redact_text("Card 4111 1111 1111 1111, mail jo@example.com")
    'Card [CARD], mail [EMAIL]'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "phone": "[PHONE]"}

# Keys of an output row whose values are ids, labels or model facts, never free text: kept as
# they are so that a redacted output still joins, resumes and compares (see `redact_row`).
ROW_KEYS_KEPT = frozenset({"id", "agent_type", "role", "model", "schema_version"})

# Starts only where a local part can start, so that a long word costs one scan, not one per
# character.
_EMAIL = re.compile(r"(?<![\w.+%-])[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# An IBAN: country, check digits, then 11-30 letters or digits, compact or in groups of 4.
_IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)"
                   r"(?![\w])", re.IGNORECASE)
# Runs of digit groups joined by one space or dash: card numbers are looked for inside them.
_DIGIT_RUN = re.compile(r"(?<![\d])\d+(?:[ -]\d+)*(?![\d])")
_DIGIT_GROUP = re.compile(r"\d+")
# A phone number: an optional + or 00, then digit groups (an area code in parentheses too)
# with at most one space, dot or dash between them.
_PHONE = re.compile(r"(?<![\w+])(?:\+|\b00)?\s?(?:\(\d{1,5}\)|\d{1,5})"
                    r"(?:[ .\-]?(?:\(\d{1,5}\)|\d{1,5})){1,7}(?![\w])")

_PHONE_GROUP = re.compile(r"\(\d{1,5}\)|\d{1,5}")

_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\d)|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}(?!\d)")


def redact_text(text: str) -> str:
    """`text` with every email, IBAN, card number and phone number replaced by its placeholder
    (`[EMAIL]`, `[IBAN]`, `[CARD]`, `[PHONE]`).

    What counts: an email is `local@domain.tld`; an IBAN passes the mod-97 check; a card
    number is 13-19 digits, in one piece or in groups of 3 or more joined by single spaces or
    dashes, that passes the Luhn check; a phone number is 7-15 digits after a `+` or `00`,
    or 9-15 digits grouped by spaces, dots, dashes or parentheses, or 10-11 digits starting
    with 0; in a longer run of digit groups, the longest part that starts with `+` and is
    one. Bare digit runs that fit none of these (order numbers, 10-digit numbers without a
    leading 0) are kept, and so are dates.
    """
    if not text or not any(c.isdigit() or c == "@" for c in text):
        return text
    if "@" in text:
        text = _EMAIL.sub(PLACEHOLDERS["email"], text)
    text = _IBAN.sub(_iban_or_keep, text)
    text = _DIGIT_RUN.sub(_cards_in_run, text)
    return _PHONE.sub(_phone_or_keep, text)


def redact_value(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """Every string inside `value` (dicts, lists, tuples) redacted; keys of dicts are kept, as
    are the values of keys in `keep`."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: v if k in keep else redact_value(v, keep) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, keep) for v in value]
    return value


def redact_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An output row with all the text it echoes redacted (metadata values and any text field a
    later version adds), and its ids, labels and model facts kept (`ROW_KEYS_KEPT`)."""
    return redact_value(row, ROW_KEYS_KEPT)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check that every payment card number passes."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """Whether `candidate` (spaces allowed) is a well-formed IBAN passing the ISO 13616 mod-97 check."""
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34 or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_or_keep(match: re.Match[str]) -> str:
    """The longest prefix of the match, cut at a group boundary, that is an IBAN (a following
    word of four letters or digits may have been taken in as a group)."""
    found = match.group()
    ends = [len(found)] + [m.start() for m in re.finditer(" ", found)][::-1]
    for end in ends:
        if iban_valid(found[:end]):
            return PLACEHOLDERS["iban"] + found[end:]
    return found


def _cards_in_run(match: re.Match[str]) -> str:
    """Within a run of digit groups, each longest stretch of whole groups that is a card number
    (13-19 digits, Luhn-valid) replaced, left to right."""
    run = match.group()
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(run)]
    out, cursor, i = [], 0, 0
    while i < len(groups):
        found = _card_from(run, groups, i)
        if found is None:
            i += 1
            continue
        out += [run[cursor:groups[i][0]], PLACEHOLDERS["card"]]
        cursor, i = groups[found][1], found + 1
    return "".join(out) + run[cursor:] if out else run


def _card_from(run: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of the longest card number starting at group `first`, or None. Cards
    are written in groups of 3 or more digits (4-4-4-4, 4-6-5) or in one piece."""
    best, digits = None, ""
    for last in range(first, len(groups)):
        start, end = groups[last]
        if end - start < 3:
            break
        digits += run[start:end]
        if len(digits) > 19:
            break
        if len(digits) >= 13 and luhn_valid(digits):
            best = last
    return best


def _phone_or_keep(match: re.Match[str]) -> str:
    found = match.group()
    lead = found[: len(found) - len(found.lstrip())]
    return lead + _redact_phone_in(found[len(lead):])


def _is_phone(body: str) -> bool:
    if _DATE.match(body):  # 2024-01-15 10, 15.01.2024: dates and times, not numbers to call
        return False
    digits = sum(c.isdigit() for c in body)
    international = body.startswith(("+", "00"))
    grouped = any(not c.isdigit() for c in body)
    return ((international and 7 <= digits <= 15) or (grouped and 9 <= digits <= 15)
            or (body.isdigit() and body.startswith("0") and 10 <= digits <= 11))


def _redact_phone_in(body: str) -> str:
    """`body` (digit groups) redacted: whole if it is a phone number, else the longest run of
    its groups that starts with + and is one, so that digits written next to an
    international number ("ref 0000 +44 20 7946 0958 0000") do not hide it by making the
    whole too long. Other runs are left alone: a look-alike card or IBAN is not a phone."""
    if _is_phone(body):
        return PLACEHOLDERS["phone"]
    spans = [m.span() for m in _PHONE_GROUP.finditer(body)]
    for size in range(len(spans) - 1, 0, -1):
        for i in range(len(spans) - size + 1):
            start, end = spans[i][0] - 1, spans[i + size - 1][1]
            if start >= 0 and body[start] == "+" and _is_phone(body[start:end]):
                return (_redact_phone_in(body[:start]) + PLACEHOLDERS["phone"]
                        + _redact_phone_in(body[end:]))
    return body
