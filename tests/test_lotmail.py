"""The lot mail of PROFILE.md §2 step 5: compostage, Subject, Message-ID, the MIME bytes, backoff."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime, timedelta, timezone

import pytest

from balise.domain.errors import ValidationError
from balise.domain.lotmail import (
    backoff,
    box_hostname,
    build_lot_mail,
    compostage,
    mail_envelope_addresses,
    message_id,
    next_counter,
    subject,
)

NOW = datetime(2026, 11, 23, 9, 5, 7, tzinfo=UTC)
ENVELOPE = bytes(range(256)) * 3


def _mail(**overrides: object) -> bytes:
    comp = compostage(NOW, 42)
    args: dict[str, object] = {
        "from_addr": "xyz999212@bal.example.net",
        "to_addr": "01422@422.01.rss.fr",
        "subject": subject("100500", "00000012345678", comp, 3),
        "message_id": message_id(comp, "001", "00000012345678", "box1.local"),
        "date": NOW,
        "envelope_der": ENVELOPE,
    }
    args.update(overrides)
    return build_lot_mail(**args)  # type: ignore[arg-type]


def test_compostage_is_utc_seconds_and_a_five_digit_counter() -> None:
    paris = timezone(timedelta(hours=1))
    assert compostage(NOW, 7) == "2026112309050700007"
    assert compostage(NOW.astimezone(paris), 99999) == "2026112309050799999"
    assert len(compostage(NOW, 0)) == 19
    assert next_counter(99998) == 99999 and next_counter(99999) == 0
    for bad in (-1, 100_000):
        with pytest.raises(ValidationError):
            compostage(NOW, bad)
    with pytest.raises(ValidationError):
        compostage(NOW.replace(tzinfo=None), 1)


def test_subject_and_message_id_follow_the_profile() -> None:
    comp = compostage(NOW, 12)
    assert subject("100500", "00000012345678", comp, 3) == (
        "IR100500/00000012345678/2026112309050700012/00003"
    )
    assert message_id(comp, "001", "00000012345678", "box1.local") == (
        "<2026112309050700012.001.00000012345678@box1.local>"
    )
    with pytest.raises(ValidationError):
        message_id(comp, "001", "00000012345678", "evil>\r\nBcc: x@y.z")
    with pytest.raises(ValidationError):
        subject("10050", "00000012345678", comp, 3)
    assert box_hostname("Box1.Local.") == "box1.local"
    assert box_hostname("bad host") == "balise.invalid"


def test_lot_mail_is_deterministic_crlf_and_parses_as_profile_0() -> None:
    mail = _mail()
    assert mail == _mail(), "a resend must be byte-identical"
    assert b"\n" not in mail.replace(b"\r\n", b"")
    assert max(len(line) for line in mail.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(mail, policy=email.policy.default)
    assert msg["From"] == "xyz999212@bal.example.net"
    assert msg["To"] == "01422@422.01.rss.fr"
    assert msg["Subject"] == "IR100500/00000012345678/2026112309050700042/00003"
    assert msg["Message-ID"] == "<2026112309050700042.001.00000012345678@box1.local>"
    assert msg["Date"].datetime == NOW
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Balise-Profile"] == "0"
    assert msg.get_content_type() == "multipart/mixed"
    parts = list(msg.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_content_type() == "application/pkcs7-mime"
    assert part.get_param("smime-type") == "enveloped-data"
    assert part.get_param("name") == "smime.p7m"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_payload(decode=True) == ENVELOPE
    assert mail_envelope_addresses(mail) == ("xyz999212@bal.example.net", "01422@422.01.rss.fr")


def test_a_different_message_id_gives_a_different_boundary_and_date_is_frozen() -> None:
    other = message_id(compostage(NOW, 43), "001", "00000012345678", "box1.local")
    assert _mail(message_id=other) != _mail()
    assert _mail(date=NOW + timedelta(seconds=1)) != _mail()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "IR100500\r\nBcc: spy@example.net"),
        ("to_addr", "01422@422.01.rss.fr\r\nBcc: spy@example.net"),
        ("from_addr", "not an address"),
        ("envelope_der", b""),
    ],
)
def test_header_injection_and_empty_envelope_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        _mail(**{field: value})


def test_backoff_grows_then_caps() -> None:
    assert [backoff(n).total_seconds() / 60 for n in range(1, 9)] == [1, 2, 5, 10, 30, 60, 60, 60]
    encoded = base64.b64encode(ENVELOPE)
    assert encoded[:76] in _mail()
