"""Lot file parser/validator (PROFILE.md §1): golden samples, one faulty lot per fault code, NIR
vectors, bilingual messages, and property tests (mutations never crash, builder round-trips)."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from balise.domain.lotfile import (
    MAX_PROBLEMS,
    MESSAGES,
    LotContext,
    LotFault,
    ParsedLot,
    Problem,
    format_aammjj,
    parse_aammjj,
    parse_lot,
    validate_lot,
)
from balise.domain.nir import is_valid_nir, nir_key
from balise.sim.lotbuild import (
    InvoiceSpec,
    LineSpec,
    build_lot,
    make_invoices,
    patch_record,
)
from tests.support.lot_corpus import (
    ADDRESSEE,
    CORPUS_TODAY,
    EMITTER,
    SAMPLES,
    context_for,
    corpus_context,
    corpus_invoices,
    faulty_lots,
    valid_lot,
)

SAMPLE_DAY = date(2026, 11, 22)


def golden_context(**overrides: object) -> LotContext:
    fields: dict[str, object] = {
        "today": date(2026, 11, 23),
        "mode": "test",
        "known_emitters": frozenset({"00000012345678"}),
        "organisms_with_certs": frozenset({"00000001422000"}),
    }
    fields.update(overrides)
    return LotContext(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- golden samples


def test_golden_valid_lot_is_accepted_with_its_contents() -> None:
    result = validate_lot((SAMPLES / "valid.lot").read_bytes(), golden_context())
    assert result.problems == ()
    lot = result.lot
    assert lot is not None
    assert lot.key == ("00000012345678", "007", "261122")
    assert lot.header.addressee == "00000001422000"
    assert (lot.header.regime, lot.header.caisse, lot.header.centre) == ("01", "422", "000")
    assert lot.header.flow == "T" and lot.header.application == "FS"
    assert lot.lot.date == SAMPLE_DAY and lot.lot.total == 5650
    assert [inv.number for inv in lot.lot.invoices] == ["000100000", "000100001", "000100002"]
    second = lot.lot.invoices[1]
    assert [(line.act_code, line.amount) for line in second.lines] == [("V", 1000), ("G", 1000)]
    assert second.total == 2000
    assert lot.trailer.record_count == 14


def test_golden_corsica_lot_is_accepted() -> None:
    result = validate_lot((SAMPLES / "valid_corsica.lot").read_bytes(), golden_context())
    assert result.problems == ()
    assert result.lot is not None
    first = result.lot.lot.invoices[0]
    assert (first.nir, first.nir_key) == ("185052A979884", 18)


def test_builder_reproduces_the_golden_samples_byte_for_byte() -> None:
    inv = [
        InvoiceSpec(100000, SAMPLE_DAY, "1850575138583", (LineSpec("G", 2650),)),
        InvoiceSpec(
            100001, SAMPLE_DAY, "1850575508780", (LineSpec("V", 1000), LineSpec("G", 1000))
        ),
        InvoiceSpec(100002, SAMPLE_DAY, "1850575097500", (LineSpec("C", 1000),)),
    ]
    built = build_lot("00000012345678", "00000001422000", 7, SAMPLE_DAY, inv)
    assert built == (SAMPLES / "valid.lot").read_bytes()
    corsica = [
        InvoiceSpec(100000, SAMPLE_DAY, "185052A979884", (LineSpec("G", 2500),)),
        InvoiceSpec(100001, SAMPLE_DAY, "1850575370856", (LineSpec("C", 2650),)),
    ]
    built = build_lot("00000012345678", "00000001422000", 8, SAMPLE_DAY, corsica, file_id="F00002")
    assert built == (SAMPLES / "valid_corsica.lot").read_bytes()


# ---------------------------------------------------------------------------- NIR


@pytest.mark.parametrize(
    ("nir", "key"),
    [("1850575138583", 78), ("185052A123456", 33), ("185052B123456", 60)],
)
def test_nir_key_vectors(nir: str, key: int) -> None:
    assert nir_key(nir) == key
    assert is_valid_nir(nir, f"{key:02d}")
    assert not is_valid_nir(nir, f"{key % 97 + 1:02d}")


def test_corsica_letters_only_count_at_positions_6_7() -> None:
    # Read as 19/18 there, i.e. 20 minus 1,000,000 / 2,000,000 — never both.
    assert nir_key("185052A123456") == 97 - (1850520123456 - 1_000_000) % 97
    assert nir_key("185052B123456") == 97 - (1850520123456 - 2_000_000) % 97
    for bad in ("18505A2123456", "185052a123456", "185052C123456", "185057513858", "x" * 13):
        assert not is_valid_nir(bad, "01")
        with pytest.raises(ValueError):
            nir_key(bad)
    assert not is_valid_nir("1850575138583", "7")
    assert not is_valid_nir("1850575138583", " 78")


# ---------------------------------------------------------------------------- fault corpus


@pytest.fixture(scope="module")
def corpus() -> dict[LotFault, bytes]:
    return faulty_lots()


@pytest.mark.parametrize("fault", list(LotFault))
def test_each_fault_has_a_corpus_lot_yielding_exactly_it(
    fault: LotFault, corpus: dict[LotFault, bytes]
) -> None:
    assert fault in corpus, f"no corpus entry for {fault.name}: add one in lot_corpus.py"
    result = validate_lot(corpus[fault], context_for(fault))
    assert not result.accepted and result.lot is None
    if fault is LotFault.TOO_MANY_PROBLEMS:
        assert len(result.problems) == MAX_PROBLEMS + 1
        assert result.faults[-1] is fault
        assert set(result.faults[:-1]) == {LotFault.NIR_KEY}
    else:
        assert set(result.faults) == {fault}, [p.detail for p in result.problems]
    for problem in result.problems:
        for lang in ("fr", "en"):
            text = problem.message(lang)
            assert "{" not in text and "?" not in text, text


def test_corpus_base_lot_is_accepted_in_test_and_demo_modes() -> None:
    for mode in ("test", "demo"):
        assert validate_lot(valid_lot(), corpus_context(mode=mode)).accepted


def test_corpus_follows_the_given_today() -> None:
    later = CORPUS_TODAY + timedelta(days=400)
    lots = faulty_lots(later)
    assert validate_lot(valid_lot(later), corpus_context(later)).accepted
    future = validate_lot(
        lots[LotFault.LOT_DATE_FUTURE], context_for(LotFault.LOT_DATE_FUTURE, later)
    )
    assert future.faults == (LotFault.LOT_DATE_FUTURE,)


# ---------------------------------------------------------------------------- messages


@pytest.mark.parametrize("fault", list(LotFault))
def test_every_fault_has_french_and_english_words(fault: LotFault) -> None:
    fr, en = MESSAGES[fault]
    assert fr.strip() and en.strip() and fr != en


def test_nir_key_message_names_invoice_and_record(corpus: dict[LotFault, bytes]) -> None:
    result = validate_lot(corpus[LotFault.NIR_KEY], corpus_context())
    (problem,) = result.problems
    assert problem.message("fr") == "Clé NIR invalide pour la facture 000100000 (enregistrement 3)."
    assert problem.message("en") == "Invalid NIR key for invoice 000100000 (record 3)."


def test_amounts_and_dates_are_shown_in_each_language(corpus: dict[LotFault, bytes]) -> None:
    (total,) = validate_lot(corpus[LotFault.INVOICE_TOTAL], corpus_context()).problems
    # French typography: a no-break space before the euro sign (balise.domain.vocabulary).
    assert "40,00\u00a0€" in total.message("fr") and "40,01\u00a0€" in total.message("fr")
    assert "€40.00" in total.message("en")
    (future,) = validate_lot(corpus[LotFault.LOT_DATE_FUTURE], corpus_context()).problems
    tomorrow = CORPUS_TODAY + timedelta(days=1)
    assert tomorrow.strftime("%d/%m/%Y") in future.message("fr")
    assert tomorrow.isoformat() in future.message("en")
    (field,) = validate_lot(corpus[LotFault.BAD_DATE], corpus_context()).problems
    assert "date des soins" in field.message("fr") and "care date" in field.message("en")


def test_non_printable_byte_offset_is_given(corpus: dict[LotFault, bytes]) -> None:
    (problem,) = validate_lot(corpus[LotFault.NON_PRINTABLE], corpus_context()).problems
    assert dict(problem.params)["offset"] == str(2 * 128 + 39)
    assert problem.record == 3
    assert "0xE9" in problem.message("fr")


# ---------------------------------------------------------------------------- behaviour


def test_all_problems_of_a_lot_are_reported_together() -> None:
    data = valid_lot(emitter="00000099999999")
    data = patch_record(data, 3, 30, "00")  # NIR key of invoice A
    data = patch_record(data, 7, 32, "Z")  # scope of invoice B
    data = patch_record(data, 11, 18, "0000000X")  # amount of invoice C's line
    result = validate_lot(data, corpus_context())
    assert set(result.faults) == {
        LotFault.NIR_KEY,
        LotFault.BAD_FIELD,
        LotFault.BAD_NUMBER,
        LotFault.UNKNOWN_EMITTER,
    }
    assert result.parsed is None


def test_context_refusal_still_names_the_lot() -> None:
    result = validate_lot(valid_lot(emitter="00000099999999"), corpus_context())
    assert result.lot is None and result.parsed is not None
    assert result.parsed.lot.number == 1


@pytest.mark.parametrize(
    ("mode", "flow", "fault"),
    [
        ("production", "R", None),
        ("production", "T", LotFault.TEST_FLOW_IN_PRODUCTION),
        ("production", "D", LotFault.TEST_FLOW_IN_PRODUCTION),
        ("test", "R", LotFault.REAL_FLOW_IN_TEST_MODE),
        ("test", "T", None),
        ("test", "D", None),
        ("demo", "R", LotFault.REAL_FLOW_IN_TEST_MODE),
        ("demo", "T", None),
        ("demo", "D", None),
    ],
)
def test_flow_type_against_mode(mode: str, flow: str, fault: LotFault | None) -> None:
    result = validate_lot(valid_lot(flow=flow), corpus_context(mode=mode))  # type: ignore[arg-type]
    assert result.faults == (() if fault is None else (fault,))


def test_lot_dated_today_is_not_in_the_future() -> None:
    assert validate_lot(valid_lot(lot_date=CORPUS_TODAY), corpus_context()).accepted


def test_organism_with_certificate_need_not_be_listed_twice() -> None:
    ctx = golden_context(known_organisms=frozenset())
    assert validate_lot((SAMPLES / "valid.lot").read_bytes(), ctx).accepted


def test_parse_lot_without_context() -> None:
    parsed = parse_lot(valid_lot(emitter="00000099999999"))
    assert isinstance(parsed, ParsedLot)
    assert parsed.sha256 == hashlib.sha256(valid_lot(emitter="00000099999999")).hexdigest()
    problems = parse_lot(b"garbage")
    assert isinstance(problems, tuple) and problems[0].fault is LotFault.FILE_SIZE


def test_years_pivot_is_always_2000s() -> None:
    assert parse_aammjj("991231") == date(2099, 12, 31)
    assert parse_aammjj("000101") == date(2000, 1, 1)
    assert parse_aammjj("260229") is None and parse_aammjj("28022９") is None
    assert format_aammjj(date(2026, 11, 22)) == "261122"
    with pytest.raises(ValueError):
        format_aammjj(date(1999, 12, 31))


def test_builder_refuses_impossible_values() -> None:
    day = CORPUS_TODAY
    with pytest.raises(ValueError):
        build_lot("123", ADDRESSEE, 1, day, corpus_invoices())
    with pytest.raises(ValueError):
        build_lot(EMITTER, ADDRESSEE, 1000, day, corpus_invoices())
    too_big = [InvoiceSpec(1, day, "1850575138583", (LineSpec("G", 10**8),))]
    with pytest.raises(ValueError):
        build_lot(EMITTER, ADDRESSEE, 1, day, too_big)
    with pytest.raises(ValueError):
        patch_record(valid_lot(), 1, 128, "XX")


def test_make_invoices_is_deterministic_and_accepted() -> None:
    assert make_invoices(20, seed=3) == make_invoices(20, seed=3)
    assert make_invoices(20, seed=3) != make_invoices(20, seed=4)
    data = valid_lot(invoices=make_invoices(200, seed=3, care_date=CORPUS_TODAY))
    result = validate_lot(data, corpus_context())
    assert result.accepted, [p.detail for p in result.problems[:3]]


# ---------------------------------------------------------------------------- properties

_BASE = valid_lot()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_BASE) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(0, len(_BASE))),
    mode=st.sampled_from(["production", "test", "demo"]),
)
def test_random_mutations_give_problems_never_exceptions(
    edits: list[tuple[int, int]], cut: int | None, mode: str
) -> None:
    data = bytearray(_BASE)
    for offset, value in edits:
        data[offset] = value
    mutated = bytes(data if cut is None else data[:cut] + data[cut + 1 :])
    result = validate_lot(mutated, corpus_context(mode=mode))  # type: ignore[arg-type]
    assert len(result.problems) <= MAX_PROBLEMS + 1
    for problem in result.problems:
        assert isinstance(problem, Problem)
        assert problem.message("fr") and problem.message("en")
    if mutated != _BASE and result.accepted:
        # A change the validator cannot see must at least keep the lot well formed.
        assert result.lot is not None and result.lot.trailer.record_count == 14
    assert isinstance(parse_lot(mutated), ParsedLot | tuple)


_NIRS = st.builds(
    lambda sex, mid, dept, tail: f"{sex}{mid}{dept}{tail}",
    st.sampled_from("12"),
    st.from_regex(r"[0-9]{4}", fullmatch=True),
    st.one_of(st.from_regex(r"[0-9]{2}", fullmatch=True), st.sampled_from(["2A", "2B"])),
    st.from_regex(r"[0-9]{6}", fullmatch=True),
)
_LINES = st.lists(
    st.builds(
        LineSpec,
        act_code=st.from_regex(r"[A-Z]{1,3}", fullmatch=True),
        amount=st.integers(0, 999_999),
        coefficient=st.integers(0, 9999),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(
    specs=st.lists(
        st.tuples(_NIRS, _LINES, st.sampled_from(["O", "C"]), st.integers(0, 60)),
        min_size=1,
        max_size=25,
    ),
    lot_number=st.integers(1, 999),
    flow=st.sampled_from(["T", "D"]),
)
def test_builder_validator_round_trip(
    specs: list[tuple[str, list[LineSpec], str, int]], lot_number: int, flow: str
) -> None:
    invoices = [
        InvoiceSpec(
            500 + i,
            CORPUS_TODAY - timedelta(days=age),
            nir,
            tuple(lines),
            scope,  # type: ignore[arg-type]
        )
        for i, (nir, lines, scope, age) in enumerate(specs)
    ]
    data = valid_lot(lot_number=lot_number, flow=flow, invoices=invoices)  # type: ignore[arg-type]
    result = validate_lot(data, corpus_context())
    assert result.problems == ()
    lot = result.lot
    assert lot is not None
    assert lot.lot.number == lot_number and lot.header.flow == flow
    assert [inv.nir for inv in lot.lot.invoices] == [inv.nir for inv in invoices]
    assert [inv.total for inv in lot.lot.invoices] == [inv.total for inv in invoices]
    assert lot.lot.total == lot.trailer.total == sum(inv.total for inv in invoices)
    assert [len(inv.lines) for inv in lot.lot.invoices] == [len(inv.lines) for inv in invoices]


@pytest.mark.parametrize(
    ("records", "where"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 14], 15),  # trailer twice
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 1, 14], 14),  # header inside
        ([1, 2, 3, 6, 7, 8, 9, 10, 11, 12, 13, 14], 4),  # invoice without lines
        ([1, 2, 13, 14], 3),  # lot without invoices
        ([1, 14], 2),  # no lot at all
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14], 13),  # lot never closed
    ],
)
def test_records_out_of_order_are_refused_at_the_first_disorder(
    records: list[int], where: int
) -> None:
    base = valid_lot()
    data = b"".join(base[(r - 1) * 128 : r * 128] for r in records)
    result = validate_lot(data, corpus_context())
    assert result.faults == (LotFault.BAD_NESTING,)
    assert result.problems[0].record == where


_RECORD_OPS = st.lists(
    st.tuples(
        st.sampled_from(["drop", "dup", "swap", "retype"]),
        st.integers(0, 15),
        st.sampled_from(["000", "999", "1", "2", "3", "5", "6", "4", "0", "9"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(ops=_RECORD_OPS)
def test_random_record_edits_give_problems_never_exceptions(
    ops: list[tuple[str, int, str]],
) -> None:
    # Byte flips rarely forge a record type; these local edits (one index each, so hypothesis
    # reaches every neighbourhood) hit the record grammar directly.
    records = [_BASE[i : i + 128] for i in range(0, len(_BASE), 128)]
    for op, at, kind in ops:
        if not records:
            break
        a = at % len(records)
        if op == "drop":
            del records[a]
        elif op == "dup":
            records.insert(a + 1, records[a])
        elif op == "swap" and a + 1 < len(records):
            records[a], records[a + 1] = records[a + 1], records[a]
        elif op == "retype":
            records[a] = kind.encode() + records[a][len(kind) :]
    result = validate_lot(b"".join(records), corpus_context())
    for problem in result.problems:
        assert problem.message("fr") and problem.message("en")
