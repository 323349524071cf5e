"""Return parser and builders (PROFILE.md §3): golden samples, damaged streams, round trips, fuzzing."""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balise.domain.returns import (
    Arl,
    InvoicePayment,
    Noemie,
    NoemieLot,
    ParsedReturn,
    PaymentState,
    Reason,
    RejectLine,
    ReturnHeader,
    ReturnProblem,
    Share,
    parse_header,
    parse_return,
)
from balise.sim.returnfile import (
    ReturnBuildError,
    build_arl,
    build_noemie,
    encode_arl,
    encode_noemie,
)
from tests.support.mail_corpus import ARL_NEG, ARL_POS, EMITTER, NOEMIE, ORGANISM_NUMBER

LOT_DATE = date(2026, 11, 22)
RETURN_DATE = date(2026, 11, 23)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Building structured values costs more than parsing them: fewer examples keep the suite fast.
ROUND_TRIP = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def entities(payload: bytes) -> tuple[bytes, list[bytes], bytes]:
    """Header, the '@'-terminated entities (with their '@') and trailer of a sound stream."""
    body = payload[128:-128]
    return payload[:128], [e + b"@" for e in body.split(b"@")[:-1]], payload[-128:]


def assemble(header: bytes, ents: list[bytes], trailer: bytes) -> bytes:
    return header + b"".join(ents) + trailer


def with_trailer(trailer: bytes, *, count: int | None = None, total: int | None = None) -> bytes:
    text = trailer.decode()
    if count is not None:
        text = text[:3] + f"{count:08d}" + text[11:]
    if total is not None:
        text = text[:11] + f"{total:011d}" + text[22:]
    return text.encode()


# --------------------------------------------------------------------------------------------
# Golden samples
# --------------------------------------------------------------------------------------------


def test_positive_arl_sample() -> None:
    parsed = parse_return(ARL_POS)
    assert parsed.kind == "arl"
    assert parsed.header == ReturnHeader(
        organism_type="CP",
        organism_number=ORGANISM_NUMBER,
        software_id="CPAM",
        emitter=EMITTER,
        application="AR",
        file_id="R00001",
        created=RETURN_DATE,
        flow_type="T",
    )
    assert parsed.arl == Arl(
        lot_number=7,
        lot_date=LOT_DATE,
        positive=True,
        invoices_received=3,
        arl_date=RETURN_DATE,
    )
    assert parsed.words() == "Lot 007 accepté (3 factures)"
    assert parsed.unknown_entities == 0


def test_negative_arl_sample() -> None:
    parsed = parse_return(ARL_NEG)
    assert parsed.kind == "arl"
    arl = parsed.arl
    assert arl is not None
    assert (arl.lot_number, arl.lot_date, arl.positive, arl.invoices_received) == (
        7,
        LOT_DATE,
        False,
        3,
    )
    assert arl.reasons == (Reason("SIGN-INV", "LOT INVERIFIABLE : SIGNATURE NON VERIFIEE"),)
    assert arl.reject_lines == (RejectLine(100000, "A123", "FACTURE REJETEE", "F"),)
    assert arl.words() == "Lot rejeté : LOT INVERIFIABLE : SIGNATURE NON VERIFIEE"
    assert arl.words("en") == "Lot rejected: LOT INVERIFIABLE : SIGNATURE NON VERIFIEE"
    assert arl.reject_lines[0].words() == "Facture 000100000 (facture) : A123 FACTURE REJETEE"


def test_noemie_sample() -> None:
    parsed = parse_return(NOEMIE)
    assert parsed.kind == "noemie"
    assert parsed.header is not None and parsed.header.application == "NO"
    noemie = parsed.noemie
    assert noemie is not None
    assert noemie.accounting_date == RETURN_DATE
    assert noemie.transfer_reference == "VIR 2026-0042"
    (lot,) = noemie.lots
    assert (lot.lot_number, lot.lot_date) == (7, LOT_DATE)
    paid, rejected, deferred = lot.invoices
    assert paid.invoice_number == 100000 and paid.invoice_type == "F"
    assert paid.amo == Share(2650, PaymentState.PAID, 2650) and paid.amc is None
    assert rejected.amo == Share(3000, PaymentState.REJECTED, 0)
    assert rejected.reject_lines == (RejectLine(100001, "B042", "ACTE NON REMBOURSABLE", "L"),)
    assert deferred.amo == Share(2500, PaymentState.DEFERRED, 0)
    assert [inv.amo.state.words() for inv in lot.invoices] == ["payé", "rejeté", "différé"]
    assert [inv.amo.state.words("en") for inv in lot.invoices] == ["paid", "rejected", "deferred"]
    assert noemie.total_paid == 2650
    assert parsed.words() == "Retour NOEMIE : 3 factures, 26,50\u00a0€ payés"


def test_builders_reproduce_golden_payloads_byte_for_byte() -> None:
    common: tuple[Literal["CP"], str, str] = ("CP", ORGANISM_NUMBER, EMITTER)
    assert build_arl(*common, 7, LOT_DATE, True, 3, RETURN_DATE, flow_type="T") == ARL_POS
    assert (
        build_arl(
            *common,
            7,
            LOT_DATE,
            False,
            3,
            RETURN_DATE,
            (Reason("SIGN-INV", "LOT INVERIFIABLE : SIGNATURE NON VERIFIEE"),),
            (RejectLine(100000, "A123", "FACTURE REJETEE", "F"),),
            flow_type="T",
        )
        == ARL_NEG
    )

    def inv(number: int, amo: Share, lines: tuple[RejectLine, ...] = ()) -> InvoicePayment:
        return InvoicePayment(number, 7, LOT_DATE, "F", amo, reject_lines=lines)

    lot = NoemieLot(
        7,
        LOT_DATE,
        (
            inv(100000, Share(2650, PaymentState.PAID, 2650)),
            inv(
                100001,
                Share(3000, PaymentState.REJECTED, 0),
                (RejectLine(100001, "B042", "ACTE NON REMBOURSABLE", "L"),),
            ),
            inv(100002, Share(2500, PaymentState.DEFERRED, 0)),
        ),
    )
    built = build_noemie(
        *common, RETURN_DATE, [lot], transfer_reference="VIR 2026-0042", flow_type="T"
    )
    assert built == NOEMIE


@pytest.mark.parametrize("payload", [ARL_POS, ARL_NEG, NOEMIE], ids=["arl+", "arl-", "noemie"])
def test_parse_then_encode_is_identity_on_samples(payload: bytes) -> None:
    parsed = parse_return(payload)
    assert parsed.header is not None
    if parsed.arl is not None:
        assert encode_arl(parsed.header, parsed.arl) == payload
    else:
        assert parsed.noemie is not None
        assert encode_noemie(parsed.header, parsed.noemie) == payload


# --------------------------------------------------------------------------------------------
# Damaged streams: a valid header, then something broken
# --------------------------------------------------------------------------------------------


def _noemie_with(index: int, new: bytes) -> bytes:
    header, ents, trailer = entities(NOEMIE)
    ents[index] = new
    return assemble(header, ents, trailer)


def _damaged_cases() -> list[tuple[str, bytes, ReturnProblem]]:
    header, ents, trailer = entities(NOEMIE)
    # NOEMIE entities: 0=070 1=080 2=100 3=198 4=100 5=198 6=294 7=100 8=198 9=990
    cut_198 = header + b"".join(ents[:3]) + ents[3][:8]
    no_990 = assemble(header, ents[:9], with_trailer(trailer, count=11))
    arl_h, arl_ents, arl_trailer = entities(ARL_NEG)
    return [
        ("missing_999", NOEMIE[:-128], ReturnProblem.MISSING_TRAILER),
        ("missing_999_arl", ARL_POS[:-128], ReturnProblem.MISSING_TRAILER),
        ("truncated_entity", cut_198, ReturnProblem.TRUNCATED_ENTITY),
        ("truncated_trailer", NOEMIE[:-40], ReturnProblem.TRUNCATED_ENTITY),
        ("unknown_entity_unterminated", NOEMIE[:-128] + b"777abc", ReturnProblem.TRUNCATED_ENTITY),
        ("short_entity", _noemie_with(1, b"0802611220@"), ReturnProblem.TRUNCATED_ENTITY),
        ("long_entity", _noemie_with(1, b"080261122007X@"), ReturnProblem.BAD_ENTITY_LENGTH),
        (
            "wrong_990_count",
            _noemie_with(9, b"9900000001000000002650@"),
            ReturnProblem.CONTROL_COUNT_MISMATCH,
        ),
        (
            "wrong_990_total",
            _noemie_with(9, b"9900000000900000002651@"),
            ReturnProblem.CONTROL_TOTAL_MISMATCH,
        ),
        (
            "wrong_999_count",
            assemble(header, ents, with_trailer(trailer, count=13)),
            ReturnProblem.TRAILER_COUNT_MISMATCH,
        ),
        (
            "wrong_999_total",
            assemble(header, ents, with_trailer(trailer, total=9999)),
            ReturnProblem.TRAILER_TOTAL_MISMATCH,
        ),
        (
            "arl_nonzero_total",
            assemble(arl_h, arl_ents, with_trailer(arl_trailer, total=1)),
            ReturnProblem.TRAILER_TOTAL_MISMATCH,
        ),
        (
            "arl_wrong_count",
            assemble(arl_h, arl_ents, with_trailer(arl_trailer, count=5)),
            ReturnProblem.TRAILER_COUNT_MISMATCH,
        ),
        ("missing_990", no_990, ReturnProblem.MISSING_CONTROL),
        ("data_after_999", NOEMIE + b"extra", ReturnProblem.DATA_AFTER_TRAILER),
        ("control_char", NOEMIE[:200] + b"\x00" + NOEMIE[201:], ReturnProblem.BAD_CHARACTER),
        ("latin1", NOEMIE[:200] + b"\xe9" + NOEMIE[201:], ReturnProblem.BAD_CHARACTER),
        ("bad_date", _noemie_with(1, b"080261322007@"), ReturnProblem.BAD_FIELD),
        ("bad_amount", _noemie_with(3, b"19800002X50P00002650@"), ReturnProblem.BAD_FIELD),
        ("bad_state", _noemie_with(3, b"19800002650X00002650@"), ReturnProblem.BAD_FIELD),
        (
            "paid_when_rejected",
            _noemie_with(5, b"19800003000R00000100@"),
            ReturnProblem.AMOUNT_INCONSISTENT,
        ),
        (
            "paid_more_than_asked",
            _noemie_with(3, b"19800002650P00002651@"),
            ReturnProblem.AMOUNT_INCONSISTENT,
        ),
        (
            "invoice_of_other_lot",
            _noemie_with(2, b"100000100000008261122F@"),
            ReturnProblem.LOT_MISMATCH,
        ),
        (
            "reject_of_other_invoice",
            _noemie_with(6, ents[6].replace(b"294000100001", b"294000100002")),
            ReturnProblem.LOT_MISMATCH,
        ),
        (
            "share_before_invoice",
            assemble(header, [ents[0], ents[1], ents[3], ents[2], *ents[4:]], trailer),
            ReturnProblem.BAD_STRUCTURE,
        ),
        (
            "085_in_noemie",
            _noemie_with(0, b"085P00003261123" + b"@"),
            ReturnProblem.BAD_STRUCTURE,
        ),
        (
            "990_in_arl",
            assemble(
                arl_h, [*arl_ents, b"9900000000400000000000@"], with_trailer(arl_trailer, count=7)
            ),
            ReturnProblem.BAD_STRUCTURE,
        ),
        (
            "second_000",
            assemble(header, [*ents[:9], b"000" + header[3:] + b"@", ents[9]], trailer),
            ReturnProblem.BAD_STRUCTURE,
        ),
        ("letter_code", _noemie_with(1, b"A80261122007@"), ReturnProblem.BAD_FIELD),
        (
            "arl_without_085",
            assemble(arl_h, arl_ents[:1], with_trailer(arl_trailer, count=3)),
            ReturnProblem.BAD_STRUCTURE,
        ),
    ]


@pytest.mark.parametrize(
    ("payload", "problem"), [c[1:] for c in _damaged_cases()], ids=[c[0] for c in _damaged_cases()]
)
def test_broken_stream_after_valid_header_is_damaged(
    payload: bytes, problem: ReturnProblem
) -> None:
    parsed = parse_return(payload)
    assert parsed.kind == "damaged", parsed
    assert parsed.problem is problem, parsed.detail
    assert parsed.header is not None and parsed.header.emitter == EMITTER
    assert parsed.arl is None and parsed.noemie is None  # never matched
    assert parsed.words().startswith("Retour endommagé : ")
    assert parsed.problem.words("en")


def _header_with(pos: int, new: bytes) -> bytes:
    """Replace header bytes at 1-based position ``pos``."""
    return NOEMIE[: pos - 1] + new + NOEMIE[pos - 1 + len(new) :]


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"", ReturnProblem.TOO_SHORT),
        (NOEMIE[:127], ReturnProblem.TOO_SHORT),
        (_header_with(1, b"001"), ReturnProblem.BAD_HEADER),
        (_header_with(4, b"XX"), ReturnProblem.BAD_HEADER),  # organism type
        (_header_with(6, b"0000000142200A"), ReturnProblem.BAD_HEADER),
        (_header_with(26, b"CP"), ReturnProblem.BAD_HEADER),  # addressee type must be PS
        (_header_with(48, b"FS"), ReturnProblem.BAD_HEADER),  # a lot, not a return
        (_header_with(56, b"261131"), ReturnProblem.BAD_HEADER),
        (_header_with(62, b"LOT0"), ReturnProblem.BAD_HEADER),
        (_header_with(66, b"02"), ReturnProblem.BAD_HEADER),
        (_header_with(71, b"X"), ReturnProblem.BAD_HEADER),
        (_header_with(83, b"256"), ReturnProblem.BAD_HEADER),
        (_header_with(100, b"@"), ReturnProblem.BAD_HEADER),
        (_header_with(100, b"\x1b"), ReturnProblem.BAD_HEADER),
        (b"%PDF-1.7\n" + bytes(300), ReturnProblem.BAD_HEADER),
    ],
)
def test_invalid_header_is_not_a_return(payload: bytes, problem: ReturnProblem) -> None:
    parsed = parse_return(payload)
    assert parsed.kind == "not_a_return"
    assert parsed.problem is problem
    assert parsed.header is None and not parsed.is_return
    assert parse_header(payload) is None


def test_unknown_entities_are_skipped_and_counted() -> None:
    header, ents, trailer = entities(NOEMIE)
    extra = [b"777SOMETHING NEW@", b"123@"]
    # Inserted before the 990: they count in both the 990 and the 999 counts.
    ents = [*ents[:2], extra[0], *ents[2:9], extra[1], ents[9]]
    ents[-1] = b"9900000001100000002650@"
    parsed = parse_return(assemble(header, ents, with_trailer(trailer, count=14)))
    assert parsed.kind == "noemie", parsed.detail
    assert parsed.unknown_entities == 2
    assert parsed.unknown_codes == ("777", "123")
    assert parsed.noemie == parse_return(NOEMIE).noemie


def test_unknown_entities_count_in_the_control_totals() -> None:
    header, ents, trailer = entities(ARL_POS)
    parsed = parse_return(assemble(header, [*ents, b"555x@"], trailer))
    assert parsed.kind == "damaged"
    assert parsed.problem is ReturnProblem.TRAILER_COUNT_MISMATCH
    assert parsed.unknown_entities == 1
    fixed = parse_return(assemble(header, [*ents, b"555x@"], with_trailer(trailer, count=5)))
    assert fixed.kind == "arl" and fixed.unknown_entities == 1


def test_entity_count_is_bounded() -> None:
    header, ents, trailer = entities(ARL_POS)
    flood = [b"555@"] * 100_001
    parsed = parse_return(assemble(header, [*ents, *flood], trailer))
    assert parsed.kind == "damaged"
    assert parsed.problem is ReturnProblem.TOO_MANY_ENTITIES


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lot_number": 1000},
        {"invoices": -1},
        {"reasons": (Reason("X", "label with @ inside"),)},
        {"reasons": (Reason("X", "é accent"),)},
        {"reasons": (Reason("CODE-TOO-LONG", "x"),)},
        {"reject_lines": (RejectLine(1, "A", "x" * 87, "F"),)},
        {"arl_date": date(1999, 1, 1)},
    ],
)
def test_arl_builder_refuses_values_that_do_not_fit(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "organism_type": "CP",
        "organism_number": ORGANISM_NUMBER,
        "emitter": EMITTER,
        "lot_number": 7,
        "lot_date": LOT_DATE,
        "positive": True,
        "invoices": 3,
        "arl_date": RETURN_DATE,
    }
    args.update(kwargs)
    with pytest.raises(ReturnBuildError) as info:
        build_arl(**args)  # type: ignore[arg-type]
    assert info.value.code == "RETURN_BUILD"


def test_noemie_builder_refuses_inconsistent_payments() -> None:
    bad = InvoicePayment(1, 7, LOT_DATE, "F", Share(100, PaymentState.REJECTED, 100))
    with pytest.raises(ReturnBuildError):
        build_noemie("CP", ORGANISM_NUMBER, EMITTER, RETURN_DATE, [NoemieLot(7, LOT_DATE, (bad,))])
    with pytest.raises(ReturnBuildError):
        build_noemie("CP", ORGANISM_NUMBER, EMITTER, None, [])


def test_noemie_without_accounting_entity_and_with_amc() -> None:
    invoice = InvoicePayment(
        42,
        12,
        LOT_DATE,
        "D",
        Share(1000, PaymentState.PAID, 700),
        Share(300, PaymentState.PAID, 300),
        reasons=(Reason("S01", "SIGNALEMENT"),),
    )
    payload = build_noemie(
        "MA",
        ORGANISM_NUMBER,
        EMITTER,
        None,
        [NoemieLot(12, LOT_DATE, (invoice,))],
        created=RETURN_DATE,
    )
    parsed = parse_return(payload)
    assert parsed.kind == "noemie"
    assert parsed.noemie == Noemie((NoemieLot(12, LOT_DATE, (invoice,)),))
    assert parsed.noemie.total_paid == 1000
    assert payload.endswith(b"99900000008" + b"%011d" % 1000 + b" " * 106)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="@"))
_dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


def _label(n: int) -> st.SearchStrategy[str]:
    # Trailing spaces are padding: a label never ends with one once parsed.
    return _text.filter(lambda s: len(s) <= n).map(lambda s: s.rstrip(" "))


_reasons = st.builds(Reason, _label(10), _label(80))


def _lines(invoice: st.SearchStrategy[int]) -> st.SearchStrategy[RejectLine]:
    return st.builds(RejectLine, invoice, _label(4), _label(86), st.sampled_from(["F", "L"]))


@st.composite
def _shares(draw: st.DrawFn) -> Share:
    state = draw(st.sampled_from(list(PaymentState)))
    asked = draw(st.integers(0, 99_999_999))
    paid = draw(st.integers(0, asked)) if state is PaymentState.PAID else 0
    return Share(asked, state, paid)


@st.composite
def _noemie(draw: st.DrawFn) -> Noemie:
    lots = []
    for _ in range(draw(st.integers(1, 3))):
        number, when = draw(st.integers(1, 999)), draw(_dates)
        invoices = []
        for _ in range(draw(st.integers(1, 3))):
            inv = draw(st.integers(0, 999_999_999))
            invoices.append(
                InvoicePayment(
                    inv,
                    number,
                    when,
                    draw(st.sampled_from(["F", "D"])),
                    draw(_shares()),
                    draw(st.none() | _shares()),
                    tuple(draw(st.lists(_reasons, max_size=2))),
                    tuple(draw(st.lists(_lines(st.just(inv)), max_size=2))),
                )
            )
        lots.append(NoemieLot(number, when, tuple(invoices)))
    accounting = draw(st.none() | _dates)
    reference = draw(_label(32)) if accounting is not None else ""
    return Noemie(tuple(lots), accounting, reference or None)


_headers = st.builds(
    ReturnHeader,
    organism_type=st.sampled_from(["CP", "MA", "OC", "OT"]),
    organism_number=st.from_regex(r"\A[0-9]{14}\Z"),
    software_id=_label(6).map(str.strip),
    emitter=st.from_regex(r"\A[0-9]{14}\Z"),
    application=st.just("AR"),
    file_id=st.from_regex(r"\A[A-Za-z0-9]{6}\Z"),
    created=_dates,
    flow_type=st.sampled_from(["R", "T", "D"]),
    program=_label(6),
)
_arls = st.builds(
    Arl,
    st.integers(0, 999),
    _dates,
    st.booleans(),
    st.integers(0, 99_999),
    _dates,
    st.lists(_reasons, max_size=3).map(tuple),
    st.lists(_lines(st.integers(0, 999_999_999)), max_size=3).map(tuple),
)


@ROUND_TRIP
@given(_headers, _arls)
def test_any_arl_round_trips(header: ReturnHeader, arl: Arl) -> None:
    payload = encode_arl(header, arl)
    parsed = parse_return(payload)
    assert parsed.kind == "arl", parsed.detail
    assert parsed.header == header and parsed.arl == arl


@ROUND_TRIP
@given(_headers.map(lambda h: dataclasses.replace(h, application="NO")), _noemie())
def test_any_noemie_round_trips(header: ReturnHeader, noemie: Noemie) -> None:
    payload = encode_noemie(header, noemie)
    parsed = parse_return(payload)
    assert parsed.kind == "noemie", parsed.detail
    assert parsed.header == header and parsed.noemie == noemie


def _check(parsed: ParsedReturn) -> None:
    assert parsed.kind in ("arl", "noemie", "damaged", "not_a_return")
    assert (parsed.header is None) == (parsed.kind == "not_a_return")
    assert (parsed.problem is None) == (parsed.kind in ("arl", "noemie"))
    assert parsed.words() and parsed.words("en")


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    _check(parse_return(data))


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_after_a_valid_header_never_raise(data: bytes) -> None:
    parsed = parse_return(NOEMIE[:128] + data)
    _check(parsed)
    assert parsed.header is not None


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([ARL_POS, ARL_NEG, NOEMIE])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and at < len(data):
            data[at] = draw(st.sampled_from(b"@0 9ZP\x00\xff"))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=20))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        else:
            del data[at:]
    return bytes(data)


@FUZZ
@given(_mutations())
def test_mutated_samples_never_raise(data: bytes) -> None:
    parsed = parse_return(data)
    _check(parsed)
    if parsed.kind in ("arl", "noemie"):
        # Whatever survived mutation is self-consistent: re-encoding parses to the same values.
        assert parsed.header is not None
        again = (
            encode_arl(parsed.header, parsed.arl)
            if parsed.arl is not None
            else encode_noemie(parsed.header, parsed.noemie)  # type: ignore[arg-type]
        )
        reparsed = parse_return(again)
        assert (reparsed.arl, reparsed.noemie) == (parsed.arl, parsed.noemie)
