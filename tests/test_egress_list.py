"""`balise egress list` against bad parameters: one unusable destination (a scoped IPv6 literal
nftables rejects, a port out of range, a host that is no host) is listed as refused with its
reason in French and left out of what the root helper loads; every other destination stays; and
no parameter value makes the command fail."""

from __future__ import annotations

import ipaddress
import json
import re
import string
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from balise.cli.egress import entry_line
from balise.domain.egress import RESOLVERS, EgressEntry, checked, crl_destination
from balise.sim.pki import TestPKI
from tests.support.balise_env import BaliseEnv

HOST = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def _set(balise_env: BaliseEnv, *args: str) -> None:
    result = balise_env.run("params", "set", *args)
    assert result.returncode == 0, result.stderr


def _card_pointing_at(balise_env: BaliseEnv, pki: TestPKI, url: str) -> None:
    """A practitioner's card whose certificate names ``url`` as its CRL distribution point:
    outside input the box takes as it is (``crl_url`` itself is checked when it is set, but a
    certificate is signed by its issuer, not by us)."""
    card = pki.issue_practitioner("10001234567", "Dr Point DISTRIBUTION", crl_urls=[url])
    _set(balise_env, "signers.titular", card.signature.cert_pem.read_text(), "--profile", "p1")


def _listed(balise_env: BaliseEnv) -> tuple[list[dict[str, Any]], str, str]:
    as_json = balise_env.run("egress", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    text = balise_env.run("egress", "list")
    assert text.returncode == 0, text.stderr
    entries: list[dict[str, Any]] = json.loads(as_json.stdout)
    return entries, text.stdout, as_json.stderr


def _loadable(host: str, port: object) -> bool:
    """What nftables takes in an egress set (or the helper resolves): an IP literal without a
    zone, or a plain DNS name; a port of 1 to 65535."""
    if not isinstance(port, int) or not 1 <= port <= 65535:
        return False
    if host == RESOLVERS:
        return True
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # A name, never a number in disguise ("999.1.1.1", "1.2.3.04").
        return (
            len(host) <= 253
            and bool(HOST.fullmatch(host))
            and not host.rsplit(".", maxsplit=1)[-1].isdigit()
        )
    return True


def _accepted(entries: list[dict[str, Any]]) -> set[tuple[str, int, str]]:
    return {(e["host"], e["port"], e["proto"]) for e in entries if not e.get("refused")}


def test_a_scoped_ipv6_crl_is_refused_and_every_other_destination_stays(
    balise_env: BaliseEnv, pki: TestPKI
) -> None:
    _set(balise_env, "smtp.host", "smtp.oct-a.fr", "--profile", "p1")
    _set(balise_env, "pop3.host", "pop.oct-a.fr", "--profile", "p1")
    _card_pointing_at(balise_env, pki, "http://[fe80::1%eth0]/ac.crl")
    entries, text, stderr = _listed(balise_env)
    refused = [e for e in entries if e.get("refused")]
    assert [(e["purpose"], e["host"]) for e in refused] == [("crl", "fe80::1%eth0")]
    assert "zone" in refused[0]["refused"]
    assert {
        ("smtp.oct-a.fr", 465, "tcp"),
        ("pop.oct-a.fr", 995, "tcp"),
        (RESOLVERS, 53, "udp"),
        ("deb.debian.org", 443, "tcp"),
    } <= _accepted(entries)
    assert all(_loadable(h, p) for h, p, _ in _accepted(entries))
    # The technician sees it, on the list and in the journal (stderr of the unit).
    line = next(line for line in text.splitlines() if "fe80::1%eth0" in line)
    assert "refusé" in line and "zone" in line
    assert "refusé" in stderr and "fe80::1%eth0" in stderr


def test_a_port_out_of_range_is_refused_not_a_crash(balise_env: BaliseEnv, pki: TestPKI) -> None:
    _set(balise_env, "smtp.host", "smtp.oct-a.fr", "--profile", "p1")
    _card_pointing_at(balise_env, pki, "http://crl.igc-test.fr:80808/ac.crl")
    entries, text, _ = _listed(balise_env)
    refused = [e for e in entries if e.get("refused")]
    assert [e["purpose"] for e in refused] == ["crl"]
    assert "port" in refused[0]["refused"]
    assert ("smtp.oct-a.fr", 465, "tcp") in _accepted(entries)
    assert "crl.igc-test.fr" not in {h for h, _, _ in _accepted(entries)}
    assert "refusé" in text


def test_a_garbage_host_is_refused(balise_env: BaliseEnv, pki: TestPKI) -> None:
    _card_pointing_at(balise_env, pki, "http://crl igc;flush ruleset/ac.crl")
    entries, _, _ = _listed(balise_env)
    refused = [e for e in entries if e.get("refused")]
    assert [e["purpose"] for e in refused] == ["crl"]
    assert "hôte" in refused[0]["refused"]
    assert all(_loadable(h, p) for h, p, _ in _accepted(entries))
    assert ("deb.debian.org", 443, "tcp") in _accepted(entries)


def test_crl_url_is_checked_when_it_is_set(balise_env: BaliseEnv) -> None:
    for bad in (
        "http://[fe80::1%eth0]/ac.crl",
        "http://crl.igc-test.fr:80808/ac.crl",
        "http://crl igc;flush ruleset/ac.crl",
        "ftp://crl.igc-test.fr/ac.crl",
        "crl.igc-test.fr/ac.crl",
        "http://user:motdepasse@crl.igc-test.fr/ac.crl",
    ):
        result = balise_env.run("params", "set", "crl_url", bad)
        assert result.returncode != 0, bad
        assert "adresse http://" in result.stderr, result.stderr
        assert balise_env.run("params", "get", "crl_url").stdout.strip() in ("", "(non défini)")
    _set(balise_env, "crl_url", "http://[2001:db8::7]:8080/ac.crl")  # an IP literal, no zone


def test_a_good_crl_host_and_port_are_listed(balise_env: BaliseEnv) -> None:
    _set(balise_env, "crl_url", "https://CRL.igc-test.fr:8443/ac.crl")
    entries, _, stderr = _listed(balise_env)
    assert ("crl.igc-test.fr", 8443, "tcp") in _accepted(entries)
    assert not [e for e in entries if e.get("refused")]
    assert stderr == ""


# -- any value at all ------------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["http://", "https://", "ftp://", "//", "[", "]", "%", "%25", ":", "@", "/", "?", "#", ".",
     "-", "fe80::1", "::ffff:1.2.3.4", "127.0.0.1", "999.1.1.1", "crl.example.fr", "é", "\u3002",
     "0", "65535", "65536", "80808", "-1", "\u0661\u0662", " ", "\t", "\x00", "\u2100"]
)  # fmt: skip
_HOSTS = st.one_of(
    st.from_regex(r"[A-Za-z0-9.\-]{0,70}", fullmatch=True),
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.builds(lambda a, z: f"[{a}%{z}]", st.ip_addresses(v=6), st.text(string.printable, max_size=6)),
)  # fmt: skip
_PORTS = st.one_of(
    st.just(""),
    st.integers(-10, 10**7).map(lambda p: f":{p}"),
    st.text(max_size=6).map(lambda t: f":{t}"),
)
_SCHEMES = st.sampled_from(["http://", "https://", "HTTP://", "ldap://", ""])
_HOSTILE_URLS = st.one_of(
    st.lists(_PIECES, max_size=12).map("".join),
    st.text(max_size=80),
    st.builds(lambda *parts: "".join(parts), _SCHEMES, _HOSTS, _PORTS, st.text(max_size=10)),
)


@settings(max_examples=600, deadline=None)
@given(_HOSTILE_URLS)
def test_any_crl_url_gives_a_loadable_destination_or_a_reason(url: str) -> None:
    entry = crl_destination(url)
    if entry is None:
        return
    assert entry.purpose == "crl" and entry.proto == "tcp"
    if entry.refused:
        assert entry.refused.strip()
    else:
        assert _loadable(entry.host, entry.port), entry
    assert "\n" not in entry_line(entry)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80), st.integers(-(2**40), 2**40), st.sampled_from(["tcp", "udp"]))
def test_any_mail_host_and_port_give_a_loadable_destination_or_a_reason(
    host: str, port: int, proto: str
) -> None:
    entry = checked(EgressEntry("smtp:p1", host, port, "tcp" if proto == "tcp" else "udp"))
    assert bool(entry.refused) != _loadable(entry.host, entry.port), entry
    assert "\n" not in entry_line(entry)
