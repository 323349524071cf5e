"""Mail classification (PROFILE.md §4): golden returns, the hostile corpus, bounds, and fuzzing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import time
import tracemalloc
from email.mime.multipart import MIMEMultipart

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balise.domain.classify import (
    Classification,
    UnknownReason,
    classify_headers_only,
    classify_message,
    domain_allowed,
    gunzip_bounded,
    sender_address,
)
from balise.domain.returns import ReturnProblem
from balise.sim.returnmail import edi_part, return_mail
from tests.support.mail_corpus import (
    ARL_NEG,
    ARL_NEG_EML,
    ARL_POS,
    ARL_POS_EML,
    GOLDEN,
    NOEMIE,
    NOEMIE_EML,
    ORGANISM_ADDRESS,
    HostileMail,
    arl_payload,
    corpus_policy,
    deep_mime_mail,
    golden_parts,
    gzip_bomb,
    gzip_bomb_mail,
    hostile_corpus,
    raw_part_mail,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEST_MODE = corpus_policy(test_mode=True)
PRODUCTION = corpus_policy(test_mode=False)


# --------------------------------------------------------------------------------------------
# Recognised returns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eml", "kind", "payload"),
    [(ARL_POS_EML, "arl", ARL_POS), (ARL_NEG_EML, "arl", ARL_NEG), (NOEMIE_EML, "noemie", NOEMIE)],
    ids=["arl+", "arl-", "noemie"],
)
def test_golden_samples_are_recognised_in_test_mode(eml: bytes, kind: str, payload: bytes) -> None:
    result = classify_message(eml, TEST_MODE)
    assert result.kind == kind and result.reason is None
    assert result.parsed is not None and result.parsed.kind == kind
    assert result.payload == payload  # what goes to the exchange account's retours/
    assert result.sender_address == ORGANISM_ADDRESS
    assert result.message_id is not None and result.message_id.endswith("@422.01.rss.fr>")
    assert result.size == len(eml) and result.sha256 == hashlib.sha256(eml).hexdigest()
    assert result.digest_scope == "message"


def test_golden_arl_words() -> None:
    assert classify_message(ARL_NEG_EML, TEST_MODE).words() == (
        "Lot rejeté : LOT INVERIFIABLE : SIGNATURE NON VERIFIEE"
    )


def test_return_mail_builder_reproduces_the_golden_mails() -> None:
    for data in GOLDEN.values():
        msg, part, body = golden_parts(data)
        rebuilt = return_mail(
            gzip.decompress(body),
            str(part["Content-Description"]),
            message_id=str(msg["Message-ID"]),
            boundary=msg.get_boundary(),
            gzip_mtime=int.from_bytes(body[4:8], "little"),
        )
        assert rebuilt == data


@pytest.mark.parametrize(
    ("description", "test_mode"),
    [("IRIS/ARL", False), ("IRIS/ARL/Z", False), ("IRISTEST/ARL", True), ("iris/arl/z", True)],
)
def test_every_known_description_and_the_bare_body(description: str, test_mode: bool) -> None:
    policy = corpus_policy(test_mode=test_mode)
    payload = arl_payload(flow_type="T" if test_mode else "R")
    for bare in (False, True):
        result = classify_message(return_mail(payload, description, bare=bare), policy)
        assert result.kind == "arl", (bare, result.reason)
        assert result.payload == payload


def test_production_box_accepts_production_returns() -> None:
    result = classify_message(return_mail(arl_payload(flow_type="R"), "IRIS/ARL/Z"), PRODUCTION)
    assert result.kind == "arl"


def test_return_broken_after_a_valid_header_is_damaged_not_unknown() -> None:
    result = classify_message(return_mail(ARL_POS[:-128], "IRISTEST/ARL/Z"), TEST_MODE)
    assert result.kind == "damaged" and result.reason is None
    assert result.parsed is not None
    assert result.parsed.problem is ReturnProblem.MISSING_TRAILER
    assert result.payload == ARL_POS[:-128]  # kept as evidence
    assert result.words().startswith("Retour endommagé")


# --------------------------------------------------------------------------------------------
# Hostile corpus
# --------------------------------------------------------------------------------------------


def _corpus_ids(mails: list[HostileMail]) -> list[str]:
    return [m.name for m in mails]


_TEST_CORPUS = hostile_corpus(test_mode=True, with_bomb=False)
_PROD_CORPUS = hostile_corpus(test_mode=False, with_bomb=False)


def _assert_unknown(result: Classification, reason: UnknownReason) -> None:
    assert result.kind == "unknown"
    assert result.reason is reason
    assert result.payload is None  # nothing of an unknown message is kept decoded
    assert result.words().startswith("Message inconnu : ")
    assert result.words("en").startswith("Unknown message: ")


@pytest.mark.parametrize("mail", _TEST_CORPUS, ids=_corpus_ids(_TEST_CORPUS))
def test_hostile_mail_is_unknown_with_its_reason_in_test_mode(mail: HostileMail) -> None:
    _assert_unknown(classify_message(mail.raw, TEST_MODE), mail.reason)


@pytest.mark.parametrize("mail", _PROD_CORPUS, ids=_corpus_ids(_PROD_CORPUS))
def test_hostile_mail_is_unknown_with_its_reason_in_production(mail: HostileMail) -> None:
    _assert_unknown(classify_message(mail.raw, PRODUCTION), mail.reason)


def test_gzip_bomb_is_refused_quickly_without_inflating_it() -> None:
    raw = gzip_bomb_mail(128 * 1024 * 1024)  # inflates to 128 MiB; about 170 KiB as mail
    assert len(raw) < TEST_MODE.size_cap
    tracemalloc.start()
    try:
        started = time.monotonic()
        result = classify_message(raw, TEST_MODE)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _assert_unknown(result, UnknownReason.GZIP_BOMB)
    assert elapsed < 2.0
    # Inflating it whole would need 128 MiB; the bounded gunzip stops just past 16 MiB.
    assert peak < 40 * 1024 * 1024


def test_gunzip_bound_on_ratio_and_on_output() -> None:
    small_bomb = gzip.compress(bytes(1024 * 1024))  # ~1,000:1, only 1 MiB out
    assert gunzip_bounded(small_bomb, 16 * 1024 * 1024, 200) is UnknownReason.GZIP_BOMB
    assert gunzip_bounded(small_bomb, 16 * 1024 * 1024, 2000) == bytes(1024 * 1024)
    assert gunzip_bounded(gzip.compress(NOEMIE), 100, 200) is UnknownReason.GZIP_BOMB
    assert gunzip_bounded(gzip.compress(NOEMIE), 16 * 1024 * 1024, 200) == NOEMIE
    assert gunzip_bounded(gzip_bomb(32 * 1024 * 1024), 1024, 10**6) is UnknownReason.GZIP_BOMB


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not gzip",
        gzip.compress(NOEMIE)[:-10],  # truncated
        gzip.compress(NOEMIE) + gzip.compress(NOEMIE),  # two members
        gzip.compress(NOEMIE) + b"\x00junk",
        NOEMIE,  # a plain stream announced as /Z
    ],
    ids=["empty", "garbage", "truncated", "two_members", "trailing", "not_compressed"],
)
def test_gunzip_refuses_malformed_streams(data: bytes) -> None:
    assert gunzip_bounded(data, 16 * 1024 * 1024, 200) is UnknownReason.BAD_ENCODING


def test_edi_part_under_a_top_level_alternative_is_misplaced() -> None:
    top = MIMEMultipart("alternative")
    top.attach(edi_part(ARL_POS, "IRISTEST/ARL/Z"))
    top["From"] = ORGANISM_ADDRESS
    _assert_unknown(classify_message(top.as_bytes(), TEST_MODE), UnknownReason.EDI_PART_MISPLACED)


@pytest.mark.parametrize(
    ("part_headers", "reason"),
    [
        (
            "Content-Type: application/EDI-consent\r\nContent-Description: IRIS/ARL",
            UnknownReason.BAD_ENCODING,  # no transfer encoding: not base64
        ),
        (
            "Content-Type: application/EDI-consent\r\nContent-Transfer-Encoding: 8bit\r\n"
            "Content-Description: IRIS/ARL",
            UnknownReason.BAD_ENCODING,
        ),
        (
            "Content-Type: application/EDI-consent\r\nContent-Transfer-Encoding: base64",
            UnknownReason.BAD_DESCRIPTION,  # no description
        ),
        (
            "Content-Type: application/EDI-consent\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Description: IRIS/ARL\r\nContent-Description: IRIS/NOEMIE",
            UnknownReason.BAD_DESCRIPTION,  # two descriptions
        ),
        (
            "Content-Type: application/EDI-consent\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Description: IRISTEST/B2/Z",
            UnknownReason.BAD_DESCRIPTION,
        ),
    ],
)
def test_edi_part_header_problems(part_headers: str, reason: UnknownReason) -> None:
    body = base64.encodebytes(ARL_POS).decode()
    _assert_unknown(classify_message(raw_part_mail(part_headers, body), TEST_MODE), reason)


def test_rules_apply_in_order_sender_before_structure() -> None:
    # A deep MIME tree from a foreign sender is refused for its sender, before any body parsing.
    raw = deep_mime_mail(50).replace(ORGANISM_ADDRESS.encode(), b"x@gmail.com")
    _assert_unknown(classify_message(raw, TEST_MODE), UnknownReason.SENDER_NOT_ALLOWED)
    # Over the cap, even a perfect return is unknown.
    small_cap = corpus_policy(size_cap=100)
    _assert_unknown(classify_message(ARL_POS_EML, small_cap), UnknownReason.TOO_LARGE)


# --------------------------------------------------------------------------------------------
# Sender rules
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "allowed"),
    [
        ("422.01.rss.fr", True),
        ("996.01.rss.fr", True),
        ("RSS.422.01.RSS.FR", True),
        ("rss.fr", False),
        ("evilrss.fr", False),
        ("rss.fr.evil.com", False),
        ("422.01.rss.fr.evil.com", False),
        ("oct.example.org", True),  # a configured OCT domain, exact
        ("x.oct.example.org", False),
    ],
)
def test_domain_allow_list(domain: str, allowed: bool) -> None:
    assert domain_allowed(domain, ("*.rss.fr", "oct.example.org")) is allowed


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["01422@422.01.rss.fr"], "01422@422.01.rss.fr"),
        (['"CPAM" <01422@422.01.RSS.fr>'], "01422@422.01.rss.fr"),
        (["CPAM\r\n <01422@422.01.rss.fr>"], "01422@422.01.rss.fr"),
        (['"01422@422.01.rss.fr" <x@evil.com>'], None),  # an address hidden in the name
        (["a@x.rss.fr, b@evil.com"], None),
        (["<a@x.rss.fr> <b@evil.com>"], None),
        (["<a@x.rss.fr> (comment)"], None),
        (["a@x.rss.fr", "b@y.rss.fr"], None),  # two From headers
        ([], None),
        (["no address"], None),
        (["é@x.rss.fr"], None),
        (["a@x.rss.fr."], None),
        (["a@-x.rss.fr"], None),
    ],
)
def test_sender_address_is_strict(values: list[str], expected: str | None) -> None:
    assert sender_address(values) == expected


# --------------------------------------------------------------------------------------------
# Metadata: bounded, printable, never in repr
# --------------------------------------------------------------------------------------------


def test_unknown_metadata_is_bounded_printable_and_kept_out_of_repr() -> None:
    subject = "\x1b[31mURGENT\x1b[0m " + "x" * 5000
    raw = (
        f"From: promo@gmail.com\r\nSubject: {subject}\r\nMessage-ID: <{'m' * 3000}@spam>\r\n"
        "Content-Type: text/html\r\n\r\n<a href='http://evil.example'>click</a>\r\n"
    ).encode()
    result = classify_message(raw, TEST_MODE)
    _assert_unknown(result, UnknownReason.SENDER_NOT_ALLOWED)
    assert result.subject is not None and result.message_id is not None
    for value in (result.subject, result.message_id, result.sender):
        assert value is not None and len(value) <= TEST_MODE.metadata_max_len
        assert value.isascii() and value.isprintable()
    assert result.subject.startswith("?[31mURGENT")
    text = repr(result)
    assert "URGENT" not in text and "gmail" not in text and "mmmm" not in text


def test_headers_only_classification_of_an_over_cap_message() -> None:
    headers = (
        b"From: 01422@422.01.rss.fr\r\nSubject: huge\r\nMessage-ID: <big@422.01.rss.fr>\r\n\r\n"
    )
    result = classify_headers_only(50 * 1024 * 1024, headers, TEST_MODE)
    _assert_unknown(result, UnknownReason.TOO_LARGE)
    assert result.size == 50 * 1024 * 1024
    assert result.digest_scope == "headers"
    assert result.sha256 == hashlib.sha256(headers).hexdigest()
    assert result.sender_address == ORGANISM_ADDRESS and result.subject == "huge"
    # Garbage headers still give a TOO_LARGE record, never an error.
    garbage = classify_headers_only(3 * 1024 * 1024, b"\xff\x00" * 100_000, TEST_MODE)
    _assert_unknown(garbage, UnknownReason.TOO_LARGE)


# --------------------------------------------------------------------------------------------
# Fuzzing: nothing raises
# --------------------------------------------------------------------------------------------

_KINDS = ("arl", "noemie", "damaged", "unknown")


def _check(result: Classification) -> None:
    assert result.kind in _KINDS
    assert (result.reason is None) == (result.kind != "unknown")
    assert result.words() is not None


@FUZZ
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    _check(classify_message(data, TEST_MODE))
    _check(classify_headers_only(len(data), data, TEST_MODE))


@FUZZ
@given(st.binary(max_size=800))
def test_random_body_from_an_allowed_sender_never_raises(data: bytes) -> None:
    raw = b"From: 01422@422.01.rss.fr\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n" + data
    _check(classify_message(raw, TEST_MODE))


@st.composite
def _mutated_mail(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([ARL_POS_EML, ARL_NEG_EML, NOEMIE_EML])))
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(data):
            data[at] = draw(st.sampled_from(b'\r\n-=@:;"<>\x00\xff A/'))
        elif op == "insert":
            snippet = draw(
                st.sampled_from(
                    [
                        b"\n--",
                        b"Content-Type: multipart/mixed; boundary=x\n",
                        b"Content-Type: message/rfc822\n\n",
                        b"Content-Transfer-Encoding: base64\n",
                        b"=?utf-8?b?w6k=?=",
                    ]
                )
                | st.binary(min_size=1, max_size=30)
            )
            data[at:at] = snippet
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        else:
            end = min(len(data), at + draw(st.integers(1, 200)))
            data[at:at] = data[at:end]
    return bytes(data)


@FUZZ
@given(_mutated_mail())
def test_mutated_golden_mails_never_raise(raw: bytes) -> None:
    for policy in (TEST_MODE, PRODUCTION):
        _check(classify_message(raw, policy))
