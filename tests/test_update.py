"""Self-updates, the app's side (issue 14), through the real `balise update` command as the image's
root helpers run it: the technician's policy, the attempt recorded before the restart and how the
next boot resolves it (Accueil's alert on a rollback), the health check, and the update gate
against a real `balise send` in progress (a real aiosmtpd server with TLS and AUTH)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from balise.adapters.locks import take_update_gate
from balise.adapters.update_state import image_version, running_version
from balise.domain.errors import ValidationError
from balise.domain.update import parse_version
from balise.sim.netutil import free_tcp_port
from balise.sim.smtpd import Received, SmtpServer
from balise.sim.softhsm import SoftHSM
from tests.support.balise_env import BALISE, BaliseEnv
from tests.support.bounded_wait import wait_until
from tests.support.box import Box
from tests.support.clock import TEST_TODAY
from tests.support.lot_corpus import valid_lot
from tests.support.mail_fixtures import SMTP_PASSWORD, SMTP_USER, TlsCA
from tests.support.pki_fixtures import MakeToken
from tests.support.signed_lots import SendingBox, configure_smtp, sign_lots

IN_PROGRESS = "Mise à jour en cours : la télétransmission reprendra après le redémarrage de la box."


def os_release(tmp_path: Path, version: str | None) -> Path:
    path = tmp_path / f"os-release-{version}"
    lines = ['PRETTY_NAME="Debian GNU/Linux 13 (trixie)"', "IMAGE_ID=balise"]
    if version is not None:
        lines.append(f'IMAGE_VERSION="{version}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_as(env: BaliseEnv, release: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return env.run(*args, env=dict(env.env, BALISE_OS_RELEASE=str(release)))


# -- versions -------------------------------------------------------------------------------------


def test_version_strings_are_checked_with_bounds() -> None:
    assert parse_version(" 1.4.0~rc1 ") == "1.4.0~rc1"
    for bad in ("", "-1.0", "1.0 beta", "1/0", "v" * 65, "1.0\n2", "é1", "1_0", "1+x"):
        with pytest.raises(ValidationError) as caught:
            parse_version(bad)
        assert "version invalide" in caught.value.fr


def test_running_version_is_the_images_else_the_packages(tmp_path: Path) -> None:
    import balise

    assert image_version([os_release(tmp_path, "2026.12.1")]) == "2026.12.1"
    # The first file that exists decides (/etc/os-release before /usr/lib/os-release).
    assert image_version([tmp_path / "absent", os_release(tmp_path, "7")]) == "7"
    assert image_version([os_release(tmp_path, None), os_release(tmp_path, "8")]) is None
    hostile = tmp_path / "hostile"
    hostile.write_text("IMAGE_VERSION='$(reboot) -f'\n", encoding="utf-8")
    assert image_version([hostile]) is None
    no_image = {"BALISE_OS_RELEASE": str(os_release(tmp_path, None))}
    assert running_version(no_image) == balise.__version__
    assert running_version({"BALISE_OS_RELEASE": str(tmp_path / "none")}) == balise.__version__


# -- policy: hold and allow, set as any parameter (CLI, provision.yml, technician screen) ---------


def test_policy_follows_the_parameters_and_says_the_running_version(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    release = os_release(tmp_path, "2026.12.1")
    first = run_as(balise_env, release, "update", "policy", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"hold": False, "allow": None, "running": "2026.12.1"}
    # As provision.yml sets them: `params set NAME` with the value on stdin, by "provision".
    provision = dict(balise_env.env, BALISE_CHANGED_BY="provision")
    assert (
        balise_env.run("params", "set", "update_hold", stdin="oui", env=provision).returncode == 0
    )
    assert balise_env.run("params", "set", "update_allow", "2026.11.3").returncode == 0
    held = run_as(balise_env, release, "update", "policy", "--json")
    assert json.loads(held.stdout) == {"hold": True, "allow": "2026.11.3", "running": "2026.12.1"}
    words = run_as(balise_env, release, "update", "policy")
    assert "maintien de la version : oui" in words.stdout
    assert "version autorisée : 2026.11.3" in words.stdout
    # A version that is not one is refused in words; emptying the allowed version is allowed.
    bad = balise_env.run("params", "set", "update_allow", "--", "--reboot")
    assert bad.returncode == 1 and "version invalide" in bad.stderr
    assert balise_env.run("params", "set", "update_allow", stdin="").returncode == 0
    cleared = run_as(balise_env, release, "update", "policy", "--json")
    assert json.loads(cleared.stdout)["allow"] is None
    ctx = balise_env.context()
    try:
        changes = [e for e in ctx.journal.entries() if e.kind == "param.set"]
        assert [(e.subject, json.loads(e.details).get("by")) for e in changes[:2]] == [
            ("global/update_hold", "provision"),
            ("global/update_allow", "cli"),
        ]
    finally:
        ctx.close()


# -- record, then the next boot's health --------------------------------------------------------


def test_update_that_boots_is_a_success_kept_as_the_last_update(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    v1, v2 = os_release(tmp_path, "1.0"), os_release(tmp_path, "2.0")
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    recorded = run_as(balise_env, v1, "update", "record", "2.0", "--json")
    assert recorded.returncode == 0, recorded.stderr
    assert json.loads(recorded.stdout)["previous"] == "1.0"
    # The box restarted into 2.0: the health check passes and resolves the attempt.
    health = run_as(balise_env, v2, "update", "health", "--json")
    assert health.returncode == 0, health.stderr
    document = json.loads(health.stdout)
    assert {c["code"] for c in document["checks"]} == {"database", "journal", "vault"}
    assert document["resolved"]["outcome"] == "success"
    assert document["resolved"]["version"] == "2.0"
    # Resolved once: the next health check of the same boot has nothing pending.
    again = run_as(balise_env, v2, "update", "health", "--json")
    assert json.loads(again.stdout)["resolved"] is None
    ctx = balise_env.context()
    try:
        kinds = [e.kind for e in ctx.journal.entries()]
        assert kinds[-2:] == ["update.installed", "update.succeeded"]
        installed = next(e for e in ctx.journal.entries() if e.kind == "update.installed")
        assert json.loads(installed.details)["words"] == "update to 2.0 installed, restarting"
        assert not ctx.returns_store.alerts()
    finally:
        ctx.close()


def test_boot_back_on_the_old_version_says_the_update_was_cancelled(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    v2 = os_release(tmp_path, "2.0")
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    assert run_as(balise_env, v2, "update", "record", "3.0").returncode == 0
    # 3.0 failed its boot: systemd-boot went back to 2.0, whose health check resolves it.
    health = run_as(balise_env, v2, "update", "health")
    assert health.returncode == 0, health.stderr
    assert "Mise à jour annulée, version 2.0 conservée" in health.stdout
    ctx = balise_env.context()
    try:
        alerts = ctx.returns_store.alerts()
        assert [(a.kind, a.fr) for a in alerts] == [
            ("update.rolled_back", "Mise à jour annulée, version 2.0 conservée.")
        ]
        rolled = [e for e in ctx.journal.entries() if e.kind == "update.rolled_back"]
        assert rolled and json.loads(rolled[0].details)["version"] == "3.0"
    finally:
        ctx.close()
    listed = balise_env.run("alerts", "list")
    assert "Mise à jour annulée, version 2.0 conservée." in listed.stdout


def test_health_fails_in_words_when_the_data_cannot_be_opened(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    v2 = os_release(tmp_path, "2.0")
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    assert run_as(balise_env, v2, "update", "record", "2.0").returncode == 0
    # Another key than the one the vault was sealed with: the data is not unlocked.
    other = tmp_path / "other.kek"
    assert balise_env.run("kek", "create", str(other)).returncode == 0
    env = dict(balise_env.env, BALISE_KEK_FILE=str(other), BALISE_OS_RELEASE=str(v2))
    failed = balise_env.run("update", "health", "--json", env=env)
    assert failed.returncode == 1
    error = json.loads(failed.stdout)["error"]
    assert error["code"] == "UPDATE_HEALTH" and "base de données" in error["fr"]
    assert "contrôle de santé en échec" in failed.stderr
    # Nothing was resolved by the failing boot: the pending attempt waits for the next one.
    ok = run_as(balise_env, v2, "update", "health", "--json")
    assert json.loads(ok.stdout)["resolved"]["outcome"] == "success"


def test_usage_errors_exit_2(balise_env: BaliseEnv) -> None:
    assert balise_env.run("update", "gate").returncode == 2  # --timeout is required
    missing = balise_env.run("update", "gate", "--timeout", "1", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["error"]["code"] == "DATA_DIR"
    assert not balise_env.home.exists()  # a wrong data dir is said, never made
    assert balise_env.run("update", "record").returncode == 2
    bad = balise_env.run("update", "record", "../../x", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["code"] == "UPDATE_VERSION"


# -- the gate against a real send in progress -------------------------------------------------------


class HeldServer:
    """A real SMTP server (aiosmtpd, implicit TLS, AUTH) whose first message's 250 waits until the
    test releases it: a `balise send` stays in progress for as long as the test needs."""

    def __init__(self, tls_ca: TlsCA) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.server = SmtpServer(
            host="127.0.0.1",
            port=free_tcp_port(),
            cert_pem=tls_ca.cert_pem,
            key_pem=tls_ca.key_pem,
            users={SMTP_USER: SMTP_PASSWORD},
            tls="implicit",
            handler_hook=self._hold,
        )

    def _hold(self, _message: Received) -> None:
        self.arrived.set()
        self.release.wait(timeout=60)


@pytest.fixture
def held_server(tls_ca: TlsCA) -> Iterator[HeldServer]:
    held = HeldServer(tls_ca)
    held.server.start()
    try:
        yield held
    finally:
        held.release.set()
        held.server.stop()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """One line of ``proc``'s stdout, waited for at most ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from {proc.args!r} within {timeout:g} s"
    return proc.stdout.readline()


@pytest.mark.mail
def test_gate_waits_for_a_send_in_progress_then_no_new_send_starts(
    sending_box: SendingBox, held_server: HeldServer, tls_ca: TlsCA
) -> None:
    env = sending_box.env
    ctx = sending_box.ctx
    configure_smtp(ctx, held_server.server, tls_ca)
    sign_lots(ctx, sending_box.pki, [1, 2])
    sending = subprocess.Popen(
        [BALISE, "send", "--json"],
        env=env.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    gate: subprocess.Popen[str] | None = None
    try:
        assert held_server.arrived.wait(timeout=30), "the send never reached the server"
        # A batch is being sent: the gate cannot be taken, and says so once its time is up.
        early = env.run("update", "gate", "--timeout", "1", "--json")
        assert early.returncode == 1, early.stdout + early.stderr
        assert json.loads(early.stdout)["error"]["code"] == "UPDATE_GATE_TIMEOUT"
        assert "la box ne redémarre pas maintenant" in early.stderr
        gate = subprocess.Popen(
            [BALISE, "update", "gate", "--timeout", "60"],
            env=env.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert gate.poll() is None
        held_server.release.set()  # the server answers 250: the batch ends
        out, err = sending.communicate(timeout=60)
        assert sending.returncode == 0, out + err
        assert len(json.loads(out)["profiles"][0]["sent"]) == 2
        assert read_line(gate, 30) == "ready\n"
        # While the gate holds: a new batch does not start, from the CLI as from the agent.
        sign_lots(ctx, sending_box.pki, [3])
        refused = env.run("send", "--json")
        assert refused.returncode == 1
        assert IN_PROGRESS in json.loads(refused.stdout)["profiles"][0]["error"]["fr"]
        agent = env.run("agent", "--once")
        assert IN_PROGRESS in agent.stderr, agent.stderr
        assert len(held_server.server.received) == 2
        # The root helper closes the gate's stdin (or the reboot kills it): sending resumes.
        assert gate.stdin is not None
        gate.stdin.close()
        assert gate.wait(timeout=30) == 0
        after = env.run("send", "--json")
        assert after.returncode == 0, after.stdout + after.stderr
        assert len(json.loads(after.stdout)["profiles"][0]["sent"]) == 1
    finally:
        held_server.release.set()
        for proc in (sending, gate):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


def test_gate_killed_releases_the_lock(balise_env: BaliseEnv) -> None:
    """The reboot kills the gate: the kernel drops its lock with the process."""
    balise_env.home.mkdir(parents=True, exist_ok=True)
    gate = subprocess.Popen(
        [BALISE, "update", "gate", "--timeout", "5", "--json"],
        env=balise_env.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(read_line(gate, 30)) == {"ready": True}
        second = balise_env.run("update", "gate", "--timeout", "0")
        assert second.returncode == 1 and "UPDATE_GATE_TIMEOUT" in second.stderr
    finally:
        gate.kill()
        gate.wait(timeout=30)
    wait_until(lambda: gate.poll() is not None, what="the killed gate is gone")
    third = subprocess.run(
        [BALISE, "update", "gate", "--timeout", "0"],
        env=balise_env.env,
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert third.returncode == 0 and third.stdout == "ready\n", third.stderr
    assert os.path.exists(balise_env.home / "locks" / "update-gate.lock")


def test_doctor_says_the_running_version_and_the_last_update(
    balise_env: BaliseEnv, tmp_path: Path
) -> None:
    v2 = os_release(tmp_path, "2.0")
    assert balise_env.run("params", "set", "mode", "test").returncode == 0
    before = json.loads(run_as(balise_env, v2, "doctor", "--json").stdout)
    assert before["running"] == "2.0"
    assert before["last_update"] is None and before["pending"] is None
    assert run_as(balise_env, v2, "update", "record", "3.0").returncode == 0
    waiting = run_as(balise_env, v2, "doctor")
    assert "3.0 installée, en attente du redémarrage" in waiting.stdout
    assert run_as(balise_env, v2, "update", "health").returncode == 0  # 3.0 did not boot
    text = run_as(balise_env, v2, "doctor").stdout
    version = next(line for line in text.splitlines() if " version " in f" {line} ")
    assert version.startswith("OK") and "2.0 (système)" in version
    update = next(line for line in text.splitlines() if "mise à jour" in line)
    assert update.startswith("ATTENTION") and "Mise à jour annulée, version 2.0 conservée" in update
    document = json.loads(run_as(balise_env, v2, "doctor", "--json").stdout)
    assert document["last_update"]["outcome"] == "rolled_back"
    assert document["last_update"]["version"] == "3.0" and document["pending"] is None
    checks = {c["code"]: c["status"] for c in document["checks"]}
    assert checks["version"] == "ok" and checks["last_update"] == "warn"


@pytest.mark.softhsm
def test_cli_signing_does_not_start_while_the_gate_holds(
    box: Box, softhsm: SoftHSM, make_token: MakeToken
) -> None:
    info = make_token(pin="1234")
    box.ctx.params.set("mode", "demo")  # the sandbox clock is never NTP-synchronized
    box.ctx.params.set("pkcs11_module", str(softhsm.module))
    assert box.ctx.intake().import_bytes("1.lot", valid_lot(TEST_TODAY, lot_number=1), "t:1")
    env = dict(box.env.env, **softhsm.env())
    gate = take_update_gate(box.env.home / "locks", 5)
    try:
        refused = box.env.run("sign", "--token", info.label, "--json", stdin="1234\n", env=env)
    finally:
        os.close(gate)
    assert refused.returncode == 1
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "UPDATE_IN_PROGRESS" and error["fr"] == IN_PROGRESS
    assert [lot.state.value for lot in box.ctx.lots.lots()] == ["ready"]
    # The gate gone, the same command signs.
    signed = box.env.run("sign", "--token", info.label, "--json", stdin="1234\n", env=env)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert [lot.state.value for lot in box.ctx.lots.lots()] == ["signed"]
