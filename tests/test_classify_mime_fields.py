"""The cheap pre-filter before the standard MIME parser (issue 12, point 2): a Content-* field with
too many or too long parameters is unknown HEADER_TOO_COMPLEX however it is hidden (folded, lone
CR line ends, in a part); genuine returns, with their one or two parameters, still pass."""

from __future__ import annotations

import pytest

from balise.domain.classify import classify_message
from tests.support.mail_corpus import ARL_POS_EML, ORGANISM_ADDRESS, corpus_policy
from tests.support.poison_mail import many_parameters_mail, quadratic_content_type_mail

HEAD = f"From: {ORGANISM_ADDRESS}\r\nSubject: IRIS\r\nMessage-ID: <m@x>\r\nMIME-Version: 1.0\r\n"


def _mail(content_type: bytes, *, eol: bytes = b"\r\n") -> bytes:
    body = b"--BB" + eol + b"Content-Type: text/plain" + eol + eol + b"x" + eol + b"--BB--" + eol
    return HEAD.replace("\r\n", eol.decode()).encode() + content_type + eol + eol + body


HIDDEN = {
    "quoted_semicolons": quadratic_content_type_mail(20_000),
    "many_parameters": many_parameters_mail(5_000),
    "folded": _mail(b'Content-Type: multipart/mixed; boundary="BB"' + b"\r\n\t; a=b" * 40),
    "lone_cr_line_ends": _mail(
        b'Content-Type: multipart/mixed; boundary="BB"' + b"; a=b" * 40, eol=b"\r"
    ),
    "lower_case_in_a_part": (
        HEAD.encode() + b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n--BB\r\n'
        b"content-disposition: attachment" + b"; a=b" * 40 + b"\r\n\r\nx\r\n--BB--\r\n"
    ),
    "one_long_value": _mail(b'Content-Type: multipart/mixed; boundary="BB"; a="' + b"x" * 9000),
}


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_a_mime_field_with_too_many_or_too_long_parameters_is_unknown(name: str) -> None:
    verdict = classify_message(HIDDEN[name], corpus_policy())
    assert (verdict.kind, verdict.reason and verdict.reason.value) == (
        "unknown",
        "HEADER_TOO_COMPLEX",
    )
    assert "paramètres trop nombreux" in verdict.words("fr")


def test_genuine_returns_and_a_few_parameters_still_pass() -> None:
    assert classify_message(ARL_POS_EML, corpus_policy()).kind == "arl"
    few = _mail(b'Content-Type: multipart/mixed; boundary="BB"' + b"; a=b" * 20)
    assert classify_message(few, corpus_policy()).reason.value == "NO_EDI_PART"  # type: ignore[union-attr]
