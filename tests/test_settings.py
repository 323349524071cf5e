"""Typed settings (balise.services.settings): one object per scope, the schema's defaults, a
stored value of the wrong type said in words; the one TLS client context factory."""

from __future__ import annotations

import ast
import ssl
from dataclasses import fields
from pathlib import Path

import pytest

import balise
from balise.adapters.tls import client_context
from balise.domain.errors import ConfigError
from balise.domain.params import SCHEMA, Scope
from balise.services.settings import (
    BoxSettings,
    box_settings,
    organism_settings,
    profile_settings,
    profiles,
)
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv

SRC = Path(balise.__file__).parent
# The parameter store (it encodes, hashes and shows any value) and the typed settings read from
# it: the only modules that may look at a parameter value's type.
SETTINGS_MODULES = {SRC / "services" / "settings.py", SRC / "services" / "params.py"}


def _reads_a_parameter(node: ast.expr) -> bool:
    """``params.get(...)``, ``self._params.value(...)``, ``ctx.params.get(...)``…"""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    return node.func.attr in ("get", "value") and "params" in ast.unparse(node.func.value)


def isinstance_on_parameter_values(source: str) -> list[int]:
    """Lines of ``isinstance`` calls on a value read from the parameters: directly, or through a
    name (or walrus) bound to such a read in the same function."""
    tree = ast.parse(source)
    found: list[int] = []
    scopes: list[ast.AST] = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]
    for scope in scopes:
        bound: set[str] = set()
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and _reads_a_parameter(node.value):
                bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.NamedExpr) and _reads_a_parameter(node.value):
                bound.add(node.target.id)
        for node in ast.walk(scope):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and node.args
            ):
                subject = node.args[0]
                if isinstance(subject, ast.NamedExpr):
                    subject = subject.value
                if _reads_a_parameter(subject) or (
                    isinstance(subject, ast.Name) and subject.id in bound
                ):
                    found.append(node.lineno)
    return sorted(set(found))


def test_the_scan_finds_the_old_loose_reads() -> None:
    old = (
        "def f(self, p):\n"
        "    port = self._params.value('smtp.port', profile=p)\n"
        "    a = port if isinstance(port, int) else 465\n"
        "    b = [q for q in ids if isinstance(self._params.get('pop3.host', profile=q), str)]\n"
        "    c = [v for q in ids if isinstance(v := ctx.params.get('pop3.interval'), int)]\n"
        "def g(settings):\n"
        "    return isinstance(settings.port, int)\n"
    )
    assert isinstance_on_parameter_values(old) == [3, 4, 5]


def test_no_isinstance_on_a_parameter_value_outside_the_settings_module() -> None:
    offenders = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if path not in SETTINGS_MODULES
        and (lines := isinstance_on_parameter_values(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "read balise.services.settings instead"


def test_one_tls_client_context_factory() -> None:
    makers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "create_default_context(" in (text := path.read_text(encoding="utf-8"))
        or "SSLContext(" in text
    }
    # The simulators' servers (tests and demo only) make their own server contexts.
    assert {m for m in makers if not m.startswith("sim/")} == {"adapters/tls.py"}


def test_the_tls_factory_verifies_explicitly(pki: TestPKI) -> None:
    for context in (client_context(), client_context([pki.root.cert_pem.read_text()])):
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.check_hostname
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    only = client_context([pki.root.cert_pem.read_text()])
    assert [c["subject"] for c in only.get_ca_certs()] == [
        c["subject"] for c in ssl.create_default_context(cadata=pki.root.cert_pem.read_text())
        .get_ca_certs()
    ]  # fmt: skip


def test_defaults_come_from_the_schema(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        ctx.params.set("pop3.host", "pop.example.fr", profile="p1")
        box = box_settings(ctx.params)
        (p1,) = profiles(ctx.params)
    finally:
        ctx.close()
    for f in fields(BoxSettings):
        spec = SCHEMA.get((Scope.GLOBAL, f.name))
        if spec is not None and isinstance(spec.default, int):
            assert getattr(box, f.name) == spec.default, f.name
    assert box.mode == SCHEMA[(Scope.GLOBAL, "mode")].default
    assert not box.weak_key_override and box.ca_bundle == () and box.oct_domains == ()
    assert (p1.id, p1.pop3_host, p1.fetches, p1.sends) == ("p1", "pop.example.fr", True, False)
    assert p1.pop3_port == SCHEMA[(Scope.PROFILE, "pop3.port")].default == 995
    assert p1.smtp_port == SCHEMA[(Scope.PROFILE, "smtp.port")].default == 465
    assert (p1.pop3_tls, p1.smtp_tls, p1.pop3_interval) == ("implicit", "implicit", 300)
    assert p1.code6 == "100500" and p1.signers_locums == ()


def test_passwords_never_show_in_a_repr(balise_env: BaliseEnv) -> None:
    ctx = balise_env.context()
    try:
        ctx.params.set("smtp.password", "Zq7-very-secret", profile="p1")
        ctx.params.set("pop3.password", "Zq8-very-secret", profile="p1")
        settings = profile_settings(ctx.params, "p1")
    finally:
        ctx.close()
    assert settings.smtp_password == "Zq7-very-secret"
    assert "very-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("scope_id", "name", "stored", "words"),
    [
        ("profile:p1", "smtp.port", "465", "un nombre entier"),
        ("profile:p1", "pop3.tls", "ssl", "l'un de : implicit, stls"),
        ("profile:p1", "pop3.host", ["a", "b"], "un texte"),
        ("", "ca_bundle", "-----BEGIN CERTIFICATE-----", "une liste"),
        ("organism:amo", "address", 3, "un texte"),
    ],
)
def test_a_wrong_typed_stored_value_is_said_in_words(
    balise_env: BaliseEnv, scope_id: str, name: str, stored: str | int | list[str], words: str
) -> None:
    ctx = balise_env.context()
    try:
        ctx.params.set("pop3.host", "pop.example.fr", profile="p1")
        ctx.params.set("address", "amo@example.fr", organism="amo")
        ctx.vault.put(scope_id, name, stored)  # a database written by hand, or by another version
        with pytest.raises(ConfigError) as raised:
            box_settings(ctx.params)
            profiles(ctx.params)
            organism_settings(ctx.params, "amo")
    finally:
        ctx.close()
    assert raised.value.code == "PARAM_TYPE"
    assert f"paramètre {name}" in raised.value.fr and words in raised.value.fr
    assert "balise params set" in raised.value.fr
    if scope_id:
        assert scope_id.split(":")[1] in raised.value.fr


def test_the_command_says_a_wrong_typed_value_and_setting_it_again_repairs(
    balise_env: BaliseEnv,
) -> None:
    made = balise_env.run("params", "set", "smtp.host", "smtp.example.fr", "--profile", "p1")
    assert made.returncode == 0, made.stderr
    ctx = balise_env.context()
    try:
        ctx.vault.put("profile:p1", "smtp.port", "vingt-cinq")
    finally:
        ctx.close()
    broken = balise_env.run("egress", "list")
    assert broken.returncode != 0
    assert "paramètre smtp.port (profil p1)" in broken.stderr
    assert "un nombre entier" in broken.stderr and "Traceback" not in broken.stderr
    # The hygiene rules judge a change leniently: the bad value never blocks its own repair.
    fixed = balise_env.run("params", "set", "smtp.port", "587", "--profile", "p1")
    assert fixed.returncode == 0, fixed.stderr
    listed = balise_env.run("egress", "list")
    assert listed.returncode == 0, listed.stderr
    assert "smtp.example.fr" in listed.stdout and "587" in listed.stdout


def test_the_doctor_names_a_wrong_typed_value(balise_env: BaliseEnv) -> None:
    made = balise_env.run("params", "set", "pop3.host", "pop.example.fr", "--profile", "p1")
    assert made.returncode == 0, made.stderr
    ctx = balise_env.context()
    try:
        ctx.vault.put("profile:p1", "pop3.interval", ["300"])
    finally:
        ctx.close()
    result = balise_env.run("doctor", "--allow-warnings")
    assert result.returncode == 1, result.stdout
    assert "PROBLÈME" in result.stdout and "paramètre pop3.interval (profil p1)" in result.stdout
