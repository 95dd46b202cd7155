"""PII detection and redaction: emails, phone numbers, credit cards (Luhn-checked), IBANs (mod-97-checked),
IP addresses (v4 and v6) and US SSNs.

Pure regular expressions plus checksums; conservative by design (a digit run is a card only if Luhn agrees,
an IBAN only if its mod-97 check is 1), so ordinary numbers are not flagged.

Example::

    >>> pii_counts("mail jane.doe@example.com or call +1 (415) 555-0100; card 4111 1111 1111 1111")
    {'email': 1, 'phone': 1, 'credit_card': 1}
    >>> redact("ssn 123-45-6789, ip 10.0.0.1")
    'ssn [SSN], ip [IP]'
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import NamedTuple

PII_TYPES = ("email", "phone", "credit_card", "iban", "ip", "ssn")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a digit string (credit card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN (spaces allowed)."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def _ip_ok(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _Detector(NamedTuple):
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None  # a checksum or range a match must also pass
    label: str
    gate: Callable[[str], object]  # a cheap necessary condition on the whole text (see _spans)


def _has(regex: str) -> Callable[[str], object]:
    return re.compile(regex).search


_IPV4_GATE = _has(r"\.\d\d?\d?\.")  # "1.2.3.4" holds ".2."
_IPV6_GATE = _has(r":[0-9A-Fa-f]{0,4}:")


_DETECTORS = [
    _Detector(
        "email",
        re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"),
        None,
        "[EMAIL]",
        lambda text: "@" in text,
    ),
    _Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        iban_ok,
        "[IBAN]",
        _has(r"[A-Z][A-Z]\d\d"),  # spelled out: a class without a repeat lets the scan skip ahead in C
    ),
    _Detector(
        "credit_card",
        re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
        lambda m: luhn_ok(re.sub(r"\D", "", m)) and 13 <= len(re.sub(r"\D", "", m)) <= 19,
        "[CARD]",
        _has(r"\d[ -]?\d[ -]?\d[ -]?\d"),
    ),
    _Detector(
        "ssn",
        re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"),
        None,
        "[SSN]",
        _has(r"-\d\d-"),  # led by a literal: the fastest scan there is
    ),
    _Detector(
        "ip",
        re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b|(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])"),
        _ip_ok,
        "[IP]",
        lambda text: _IPV4_GATE(text) or _IPV6_GATE(text),
    ),
    _Detector(
        "phone",
        re.compile(
            r"(?<![\w+.-])(?<!\d[ .-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?"
            r"\d{2,4}[ .-]\d{3,4}(?:[ .-]\d{2,4})?(?![ .-]?\d)"
        ),
        lambda m: 7 <= len(re.sub(r"\D", "", m)) <= 15,
        "[PHONE]",
        _has(r"\d[ .-]\d\d\d"),
    ),
]
_DIGIT_LED = {"iban", "credit_card", "ssn", "phone"}  # every match holds two digits at most one character apart
_DIGIT_PAIR = re.compile(r"\d[ .()-]?\d")
_MAYBE_PII = re.compile(r"[@:\d]")


def _spans(text: str, gated: bool = True) -> list[tuple[int, int, str, str]]:
    """Non-overlapping matches, detectors earlier in the list winning.

    Each detector's full pattern (the costly part: most of them can start at almost any position) runs only
    when its gate finds what every one of its matches must contain (an "@"; two digits at most one character
    apart, then the detector's own digit shape); on real answers most gates fail, so a long text costs a few
    fast scans instead of six full ones. ``gated=False`` runs every pattern (the tests compare the two).
    """
    taken: list[tuple[int, int, str, str]] = []
    if gated and _MAYBE_PII.search(text) is None:  # no "@", ":" or digit: no detector can match
        return taken
    digits = not gated or _DIGIT_PAIR.search(text) is not None
    for kind, pattern, check, label, gate in _DETECTORS:
        if gated and ((kind in _DIGIT_LED and not digits) or not gate(text)):
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if check is not None and not check(match.group()):
                continue
            if any(start < e and s < end for s, e, _, _ in taken):
                continue
            taken.append((start, end, kind, label))
    return sorted(taken)


def pii_counts(text: str) -> dict[str, int]:
    """How many of each PII type ``text`` contains (types with none are left out)."""
    counts: dict[str, int] = {}
    for _, _, kind, _ in _spans(text):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def redact(text: str) -> str:
    """``text`` with every detected PII replaced by a label such as ``[EMAIL]``."""
    out, pos = [], 0
    for start, end, _, label in _spans(text):
        out.append(text[pos:start])
        out.append(label)
        pos = end
    out.append(text[pos:])
    return "".join(out)
