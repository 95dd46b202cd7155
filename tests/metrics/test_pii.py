"""PII detection and redaction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.pii import _spans, iban_ok, luhn_ok, pii_counts, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+news@example.co.uk today", {"email": 1}),
        ("call +1 (415) 555-0100 or 020 7946 0958", {"phone": 2}),
        ("card 4111 1111 1111 1111 and 5500-0000-0000-0004", {"credit_card": 2}),
        ("not a card: 4111 1111 1111 1112", {}),
        ("IBAN DE89 3704 0044 0532 0130 00, GB82WEST12345698765432", {"iban": 2}),
        ("bad IBAN DE00 3704 0044 0532 0130 00", {}),
        ("hosts 192.168.1.20 and 2001:db8::1", {"ip": 2}),
        ("not ip 999.1.1.1, not time 10:00:00", {}),
        ("ssn 123-45-6789 but not 000-12-3456", {"ssn": 1}),
        ("order 12345678 shipped 2026-11-25 for 1,234.56 USD", {}),
    ],
)
def test_pii_detection(text: str, expected: dict[str, int]) -> None:
    assert pii_counts(text) == expected


def test_redaction_removes_every_detected_value() -> None:
    text = "Mail jane@example.com, card 4111 1111 1111 1111, ssn 123-45-6789, ip 10.1.2.3."
    red = redact(text)
    assert red == "Mail [EMAIL], card [CARD], ssn [SSN], ip [IP]."
    assert pii_counts(red) == {}
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB82")


_PIECES = [
    "jane.doe@example.com", "a@b", "@", "+1 (415) 555-0100", "020 7946 0958", "4111 1111 1111 1111",
    "5500-0000-0000-0004", "DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "192.168.1.20", "1.2.3",
    "2001:db8::1", "::1", "10:00:00", "123-45-6789", "2026-11-25", "1,234.56", "v1.2.3.4", "x", " ", "  ", "\n",
    "-", ".", "(", ")", ":", "+", "é", "AB", "12", "7",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(_PIECES) | st.text(alphabet="0123456789 .:-()+@ABEFGXabcdef", max_size=12), max_size=14)
)
def test_gates_never_change_what_is_found(pieces: list[str]) -> None:
    """The gates only skip patterns that cannot match: the spans are those of running every pattern."""
    text = "".join(pieces)
    assert _spans(text) == _spans(text, gated=False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_gates_never_change_what_is_found_in_any_text(text: str) -> None:
    assert _spans(text) == _spans(text, gated=False)
