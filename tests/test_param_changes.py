"""The one service every parameter change goes through (CLI, provision.yml, kiosk technician mode,
first-start wizard, self-service with the card): schema validation, mailbox hygiene always on,
several changes judged and saved together or not at all, and a journal entry naming who made it."""

from __future__ import annotations

import json

import pytest

from balise.adapters.clock import FixedClock
from balise.adapters.journal import SqliteJournal
from balise.app.context import Context
from balise.domain.errors import ValidationError
from balise.domain.params import Scope
from balise.services.params import Change, ParameterService
from tests.support.balise_env import BaliseEnv
from tests.support.clock import TEST_NOW


def _param_entries(ctx: Context) -> list[dict[str, object]]:
    return [json.loads(e.details) for e in ctx.journal.entries() if e.kind == "param.set"]


def test_several_changes_are_judged_on_the_state_they_make_together(
    balise_env: BaliseEnv,
) -> None:
    ctx = balise_env.context()
    try:
        p = ctx.params
        p.set("bal_address", "cab0042@bal.example.net", profile="p1")
        p.set("bal_address", "cab0077@bal.example.net", profile="p2")
        # One at a time, swapping the two mailboxes goes through a shared BAL: refused.
        with pytest.raises(ValidationError) as refused:
            p.set("bal_address", "cab0077@bal.example.net", profile="p1")
        assert refused.value.code == "HYG_SHARED_BAL"
        # Together, the final state has no shared BAL: accepted, both saved, by the technician.
        p.apply(
            [
                Change("bal_address", "cab0077@bal.example.net", profile="p1"),
                Change("bal_address", "cab0042@bal.example.net", profile="p2"),
            ],
            by="technicien",
        )
        assert p.get("bal_address", profile="p1") == "cab0077@bal.example.net"
        assert p.get("bal_address", profile="p2") == "cab0042@bal.example.net"
        last = _param_entries(ctx)[-2:]
        assert [e["by"] for e in last] == ["technicien", "technicien"]
    finally:
        ctx.close()


def test_one_bad_value_saves_none_of_the_changes(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        before = len(list(ctx.journal.entries()))
        with pytest.raises(ValidationError) as bad:
            ctx.params.apply(
                [
                    Change("display_name", "Dr Nouveau", profile="p9"),
                    Change("smtp.password", "secret-9", profile="p9"),
                    Change("smtp.port", "99999", profile="p9"),
                ],
                by="10001234567",
            )
        assert "smtp.port" in bad.value.fr
        assert ctx.params.ids(Scope.PROFILE) == []
        assert len(list(ctx.journal.entries())) == before
    finally:
        ctx.close()


def test_hygiene_is_applied_even_when_no_validator_is_given(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        bare = ParameterService(
            ctx.vault, SqliteJournal(ctx.store, FixedClock(TEST_NOW), "x"), ctx.clock
        )
        with pytest.raises(ValidationError) as refused:
            bare.set("smtp.host", "smtp.gmail.com", profile="p1")
        assert refused.value.code == "HYG_WEBMAIL"
        assert bare.get("smtp.host", profile="p1") is None
    finally:
        ctx.close()


def test_the_journal_names_who_made_the_change_and_never_a_secret(
    balise_env: BaliseEnv,
) -> None:
    done = balise_env.run("params", "set", "display_name", "Dr Test", "--profile", "p1")
    assert done.returncode == 0, done.stderr
    provision = {**balise_env.env, "BALISE_CHANGED_BY": "provision"}
    done = balise_env.run(
        "params", "set", "smtp.password", "--secret", "--profile", "p1",
        stdin="tres-secret-1\n", env=provision,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # Anything else in the variable is not believed: the change is the command line's.
    other = {**balise_env.env, "BALISE_CHANGED_BY": "10001234567"}
    done = balise_env.run("params", "set", "pop3.port", "995", "--profile", "p1", env=other)
    assert done.returncode == 0, done.stderr
    ctx = balise_env.context()
    try:
        entries = _param_entries(ctx)
        assert [(e["name"], e["by"]) for e in entries] == [
            ("display_name", "cli"),
            ("smtp.password", "provision"),
            ("pop3.port", "cli"),
        ]
        assert entries[1]["value"] == "(masqué)"
        assert all("tres-secret-1" not in e.details for e in ctx.journal.entries())
    finally:
        ctx.close()


def test_servers_under_test_are_let_out_for_ten_minutes_only(balise_env: BaliseEnv) -> None:
    from datetime import timedelta

    from balise.services.egress import egress_entries

    ctx = balise_env.context()
    try:
        clock = FixedClock(TEST_NOW)
        params = ParameterService(ctx.vault, ctx.journal, clock)
        params.hold_egress([("smtp.bal.example.net", 465), ("pop.bal.example.net", 995)], by="x")
        held = [(e.host, e.port) for e in egress_entries(params) if e.purpose == "test-connexion"]
        assert sorted(held) == [("pop.bal.example.net", 995), ("smtp.bal.example.net", 465)]
        assert params.rows() == []  # not a parameter: never listed
        clock.when = TEST_NOW + timedelta(minutes=11)
        assert params.held_egress() == []
        assert not [e for e in egress_entries(params) if e.purpose == "test-connexion"]
        kinds = [e.kind for e in ctx.journal.entries()]
        assert kinds == ["egress.held"]
    finally:
        ctx.close()
