"""The classifier's fast reading of a plain return (domain.classify._fast_tree) builds the very
tree the standard parser builds — the same header fields, content types, parts and payloads —
or declines and leaves the mail to the standard parser. So a mail gets the same verdict either
way; only the purge's time changes (the analysis of a thousand returns took most of it). The
same for the header block every mail is first read by (_fast_header_block)."""

from __future__ import annotations

from email import policy as email_policy
from email.message import Message
from email.parser import BytesParser

import pytest

from balise.domain import classify
from balise.domain.classify import classify_message
from balise.sim.returnmail import return_mail as _return_mail
from tests.support.mail_corpus import (
    ARL_NEG_EML,
    ARL_POS_EML,
    GOLDEN,
    NOEMIE_EML,
    arl_payload,
    corpus_policy,
    hostile_corpus,
)

B = "===============0601994162713386358=="


def _standard(raw: bytes) -> Message:
    return BytesParser(policy=email_policy.compat32).parsebytes(raw)


def _shape(msg: Message) -> object:
    """What the classifier reads of a tree: fields in order, types, parts, payloads."""
    children = msg.get_payload() if msg.is_multipart() else None
    return (
        list(msg.raw_items()),
        msg.get_content_type(),
        msg.is_multipart(),
        [_shape(c) for c in children if isinstance(c, Message)]
        if isinstance(children, list)
        else msg.get_payload(),
    )


def _variants() -> list[bytes]:
    base = ARL_POS_EML
    lf = base.replace(b"\r\n", b"\n")
    crlf = lf.replace(b"\n", b"\r\n")
    sep = f"--{B}".encode()
    out = [
        base,
        ARL_NEG_EML,
        NOEMIE_EML,
        lf,
        crlf,
        _return_mail(arl_payload(), bare=True),
        _return_mail(arl_payload(), boundary="a:b"),
        _return_mail(arl_payload(), boundary="simple"),
        # Folded header fields, at the top and in the part.
        lf.replace(b"Subject: IRIS\n", b"Subject: IRIS\n\tcontinued\n"),
        lf.replace(
            b"Content-Transfer-Encoding: base64\n", b"Content-Transfer-Encoding:\n base64\n"
        ),
        lf.replace(b"Content-Type: multipart/mixed; ", b"Content-Type: multipart/mixed;\n "),
        # A preamble, an epilogue, a last line without its line end.
        lf.replace(b"\n\n" + sep, b"\n\nThis is a multi-part message in MIME format.\n" + sep, 1),
        lf + b"epilogue\n",
        lf.rstrip(b"\n"),
        # Boundary lines the standard parser reads in its own ways.
        lf.replace(sep + b"\n", sep + b"  \n", 1),
        lf.replace(sep + b"--", sep + b"-- \t", 1),
        lf.replace(sep + b"\n", sep + b"\n" + sep + b"\n", 1),
        lf.replace(sep + b"--\n", b""),
        lf.replace(b"\n" + sep + b"--", b"\n" + sep + b"x\n" + sep + b"--"),
        lf.replace(b"H4sI", sep + b"\nH4sI", 1),
        lf.replace(b"MIME-Version: 1.0\nContent-Transfer", b"MIME-Version: 1.0\n" + sep + b"\nX"),
        # Header lines that are not plain fields.
        b"From someone Mon Nov 23 10:00:00 2026\n" + lf,
        b" leading continuation\n" + lf,
        lf.replace(b"Subject: IRIS\n", b"Subject IRIS\n"),
        lf.replace(b"Subject: IRIS\n", b": no name\n"),
        lf.replace(b"Subject: IRIS\n", b"Bad Name: x\n"),
        lf.replace(b"\n\n" + sep, b"\n" + sep, 1),
        # Other content types, bytes and line ends.
        lf.replace(b"multipart/mixed", b"MULTIPART/Mixed"),
        lf.replace(b"multipart/mixed", b"multipart/alternative"),
        lf.replace(b"application/EDI-consent", b"message/rfc822"),
        lf.replace(b"application/EDI-consent", b"multipart/mixed; boundary=inner"),
        lf.replace(b'boundary="', b'boundary="" x="'),
        lf.replace(
            b"Content-Type: multipart/mixed", b"Content-Type: text/plain\nContent-Type: x/y"
        ),
        lf.replace(b"Subject: IRIS", "Subject: IRIS é".encode()),
        lf.replace(b"Subject: IRIS\n", b"Subject: IRIS\rX\n"),
        lf.replace(b"IRIS\n", b"IRIS  \n"),
        b"",
        b"\n\n",
    ]
    out += [m.raw for m in hostile_corpus(with_bomb=False)]
    return out


VARIANTS = _variants()
IDS = [f"mail{i}" for i in range(len(VARIANTS))]


@pytest.mark.parametrize("raw", VARIANTS, ids=IDS)
def test_fast_tree_is_the_standard_tree_or_declines(raw: bytes) -> None:
    fast = classify._fast_tree(raw)
    if fast is not None:
        assert _shape(fast) == _shape(_standard(raw))


@pytest.mark.parametrize("raw", VARIANTS, ids=IDS)
def test_fast_header_block_is_the_standard_one_or_declines(raw: bytes) -> None:
    block = classify._header_block(raw, corpus_policy().max_header_bytes)
    fast = classify._fast_header_block(block)
    if fast is not None:
        standard = BytesParser(policy=email_policy.compat32).parsebytes(block, headersonly=True)
        assert _shape(fast) == _shape(standard)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_genuine_returns_take_the_fast_way(name: str) -> None:
    raw = GOLDEN[name]
    assert classify._fast_tree(raw) is not None
    assert classify._fast_tree(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")) is not None
    assert classify._fast_header_block(classify._header_block(raw, 64 * 1024)) is not None


@pytest.mark.parametrize("raw", VARIANTS, ids=IDS)
def test_same_verdict_as_the_standard_parser(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = corpus_policy()
    fast = classify_message(raw, policy)
    monkeypatch.setattr(classify, "_fast_tree", lambda _raw: None)
    monkeypatch.setattr(classify, "_fast_header_block", lambda _raw: None)
    assert classify_message(raw, policy) == fast
