"""The ONE egress list: `balise egress list`, the root helper that loads it into nftables sets,
and the default-drop ruleset of the hardening role (checked by nft, loaded only in a private
network namespace, never in this machine's own)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.image.roles import render, role_defaults
from tests.support.balise_env import BaliseEnv

pytestmark = pytest.mark.image

REPO = Path(__file__).resolve().parents[2]
HARDENING = REPO / "ansible" / "roles" / "hardening"
HELPER = HARDENING / "files" / "balise-egress-apply"


def _ruleset(tmp_path: Path) -> Path:
    text = render(HARDENING / "templates" / "nftables.conf.j2", **role_defaults(HARDENING))
    path = tmp_path / "nftables.conf"
    path.write_text(text, encoding="utf-8")
    return path


def _set_params(balise_env: BaliseEnv, *args: str) -> None:
    result = balise_env.run("params", "set", *args)
    assert result.returncode == 0, result.stderr


def test_list_follows_the_parameters_at_once(balise_env: BaliseEnv) -> None:
    _set_params(balise_env, "smtp.host", "smtp.oct-a.fr", "--profile", "p1")
    _set_params(balise_env, "pop3.host", "pop.oct-a.fr", "--profile", "p1")
    _set_params(balise_env, "smtp.host", "127.0.0.2", "--profile", "p2")
    _set_params(balise_env, "smtp.port", "587", "--profile", "p2")
    _set_params(balise_env, "crl_url", "http://crl.igc-test.fr/ac.crl")
    result = balise_env.run("egress", "list", "--json")
    assert result.returncode == 0, result.stderr
    entries = {(e["host"], e["port"], e["proto"]) for e in json.loads(result.stdout)}
    assert {
        ("smtp.oct-a.fr", 465, "tcp"),
        ("pop.oct-a.fr", 995, "tcp"),
        ("127.0.0.2", 587, "tcp"),
        ("crl.igc-test.fr", 80, "tcp"),
        ("@resolvers", 53, "udp"),
        ("deb.debian.org", 443, "tcp"),
        ("security.debian.org", 443, "tcp"),
        ("igc-sante.esante.gouv.fr", 80, "tcp"),
    } <= entries
    assert any(host.endswith("pool.ntp.org") and proto == "udp" for host, _, proto in entries)

    _set_params(balise_env, "smtp.host", "smtp.oct-b.fr", "--profile", "p1")
    hosts = {e["host"] for e in json.loads(balise_env.run("egress", "list", "--json").stdout)}
    assert "smtp.oct-b.fr" in hosts
    assert "smtp.oct-a.fr" not in hosts
    text = balise_env.run("egress", "list")
    assert "smtp:p1" in text.stdout and "smtp.oct-b.fr" in text.stdout


def test_list_written_atomically_for_the_helper(balise_env: BaliseEnv, tmp_path: Path) -> None:
    _set_params(balise_env, "pop3.host", "pop.oct-a.fr", "--profile", "p1")
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    out = out_dir / "egress.json"
    result = balise_env.run("egress", "list", "--json", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert ("pop.oct-a.fr", 995) in {(e["host"], e["port"]) for e in json.loads(out.read_text())}
    assert [p.name for p in out_dir.iterdir()] == ["egress.json"]  # no temporary left over


def test_ruleset_checks_and_drops_by_default(tmp_path: Path) -> None:
    ruleset = _ruleset(tmp_path)
    check = subprocess.run(["nft", "-c", "-f", str(ruleset)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    text = ruleset.read_text()
    for chain in ("input", "forward", "output"):
        assert f"hook {chain} priority filter; policy drop;" in text


def _write_list(path: Path, entries: list[tuple[str, int, str]]) -> None:
    path.write_text(
        json.dumps([{"purpose": "t", "host": h, "port": p, "proto": pr} for h, p, pr in entries])
    )


def test_helper_dry_run_resolves_and_reports(tmp_path: Path) -> None:
    listing = tmp_path / "egress.json"
    _write_list(
        listing,
        [("127.0.0.2", 465, "tcp"), ("localhost", 995, "tcp"), ("no-such-host.invalid", 25, "tcp")],
    )
    result = subprocess.run(
        ["/usr/bin/python3", str(HELPER), "--dry-run", str(listing)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "127.0.0.2 . 465" in result.stdout
    assert "127.0.0.1 . 995" in result.stdout
    assert "no-such-host.invalid" in result.stderr
    assert "flush set inet balise egress_tcp_v4" in result.stdout


def test_sets_loaded_in_a_private_network_namespace(tmp_path: Path) -> None:
    ruleset = _ruleset(tmp_path)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    _write_list(first, [("127.0.0.2", 465, "tcp"), ("127.0.0.3", 123, "udp")])
    _write_list(second, [("127.0.0.4", 995, "tcp")])
    script = (
        f"set -e; nft -f {ruleset}; "
        f"/usr/bin/python3 {HELPER} {first}; nft list set inet balise egress_tcp_v4; "
        f"nft list set inet balise egress_udp_v4; echo ---; "
        f"/usr/bin/python3 {HELPER} {second}; nft list set inet balise egress_tcp_v4; "
        "nft list chain inet balise output"
    )
    result = subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.split("---", 1)
    assert "127.0.0.2 . 465" in before and "127.0.0.3 . 123" in before
    assert "127.0.0.4 . 995" in after
    assert "127.0.0.2" not in after  # a host removed from the parameters is no longer reachable
    assert "policy drop;" in after


def _egress_netns(tmp_path: Path, listing: Path) -> subprocess.CompletedProcess[str]:
    ruleset = _ruleset(tmp_path)
    script = (
        f"set -e; nft -f {ruleset}; /usr/bin/python3 {HELPER} {listing}; echo ---; "
        "nft list set inet balise egress_tcp_v4; nft list set inet balise egress_tcp_v6"
    )
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )


def test_one_bad_entry_never_cuts_the_others(tmp_path: Path) -> None:
    listing = tmp_path / "egress.json"
    good = [{"purpose": "smtp:p1", "host": "127.0.0.2", "port": 465, "proto": "tcp"},
            {"purpose": "pop3:p1", "host": "::1", "port": 995, "proto": "tcp"}]  # fmt: skip
    bad = [
        # nft rejected the whole transaction for this one: no DNS, SMTP or POP3 at all.
        {"purpose": "crl", "host": "fe80::1%eth0", "port": 80, "proto": "tcp"},
        {"purpose": "crl", "host": "127.0.0.3", "port": 80808, "proto": "tcp"},
        {"purpose": "smtp:p2", "host": "127.0.0.4", "port": "x", "proto": "tcp"},
        {"purpose": "smtp:p3", "host": "smtp;flush ruleset", "port": 25, "proto": "tcp"},
        {"purpose": "smtp:p4", "host": ["127.0.0.5"], "port": 25, "proto": "tcp"},
        {"purpose": "pop3:p5", "host": "127.0.0.6", "port": 110, "proto": "sctp"},
        "127.0.0.7",
        # Refused by `balise egress list` already: listed for the record, never loaded.
        {"purpose": "crl", "host": "127.0.0.8", "port": 80, "proto": "tcp", "refused": "port"},
    ]
    listing.write_text(json.dumps(bad[:2] + good + bad[2:]))
    result = _egress_netns(tmp_path, listing)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split("---", 1)[1]
    assert "127.0.0.2 . 465" in loaded and "::1 . 995" in loaded
    for address in ("fe80::1", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7",
                    "127.0.0.8"):  # fmt: skip
        assert address not in loaded
    for shown in ("fe80::1%eth0", "80808", "smtp;flush ruleset", "sctp", "127.0.0.8"):
        assert shown in result.stderr, result.stderr
    assert "2 destination(s) loaded" in result.stdout


def test_an_element_nft_refuses_costs_only_itself(tmp_path: Path) -> None:
    """Whatever the checks miss: an nft that refuses one element (a stand-in, on PATH) leaves
    the others loaded, each in a transaction of its own after the whole one failed."""
    fake = tmp_path / "bin"
    fake.mkdir()
    record = tmp_path / "loaded.txt"
    (fake / "nft").write_text(
        "#!/bin/sh\n"
        f'script=$(cat); case "$script" in *127.0.0.9*) exit 1 ;; esac\n'
        f'printf "%s\\n" "$script" >> {record}\n'
    )
    (fake / "nft").chmod(0o755)
    listing = tmp_path / "egress.json"
    _write_list(listing, [("127.0.0.2", 465, "tcp"), ("127.0.0.9", 25, "tcp"),
                          ("127.0.0.3", 123, "udp")])  # fmt: skip
    result = subprocess.run(
        ["/usr/bin/python3", str(HELPER), str(listing)],
        capture_output=True, text=True, timeout=60,
        env={"PATH": f"{fake}:/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    loaded = record.read_text()
    assert "127.0.0.2 . 465" in loaded and "127.0.0.3 . 123" in loaded
    assert "127.0.0.9" not in loaded
    assert "127.0.0.9 . 25" in result.stderr
