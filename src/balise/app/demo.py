"""`balise demo`: the whole box on embedded defaults — test PKI, SoftHSM2 card, pcscd with a virtual
reader, Dovecot, the OCT simulator, demo lots and a spam — then the kiosk; everything stopped at exit.

Composition root for the demo only: it may import the simulators (balise.sim) and the adapters.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from balise.adapters.kek import create_key_file
from balise.app.agent import Agent
from balise.app.context import Context, open_context
from balise.domain.codes import GeneralCode
from balise.domain.errors import BaliseError, os_error_words
from balise.sim.box import BAL, CPAM, EMITTER, configure_box, configure_organisms
from balise.sim.dovecot import DovecotServer
from balise.sim.lotbuild import build_lot, make_invoices, patch_record
from balise.sim.netutil import free_tcp_port
from balise.sim.oct import OctSimulator, OrganismKey
from balise.sim.pcscd import PcscdRunner, find_vpcd_driver, running_pcscd_pids
from balise.sim.pki import Issued, TestPKI, build_pki
from balise.sim.readers import DemoReaderWatcher
from balise.sim.softhsm import SoftHSM
from balise.sim.vcard import ATR_CPS3, VirtualCard, VirtualReaderLink

if TYPE_CHECKING:
    from balise.ui.backend import KioskBackend
    from balise.ui.demo_hooks import DemoHooks

__all__ = [
    "DEMO_PIN",
    "DEMO_TECHNICIAN_PASSPHRASE",
    "INVALID_LOT_NAME",
    "DemoAgent",
    "DemoBox",
    "DemoError",
    "demo_backend",
    "demo_lots",
    "drop_lots",
    "start_demo",
]

DEMO_PIN: Final = "1234"
DEMO_SO_PIN: Final = "12345678"
DEMO_TOKEN_LABEL: Final = "CPS DEMO"  # noqa: S105 - a token label, not a secret
DEMO_TECHNICIAN_PASSPHRASE: Final = "technicien-demo"  # noqa: S105 - shown on the demo screen
DEMO_RECOVERY_PASSPHRASE: Final = "secours-demo-balise"  # noqa: S105 - demo only, in the README
DEMO_LOT_COUNT: Final = 5
INVALID_LOT_NAME: Final = "demo-lot-invalide.lot"
LOOPBACK: Final = "127.0.0.1"
# The shortest poll interval the parameters allow: the ARLs show up within half a minute.
POP3_INTERVAL_S: Final = 30
# The agent's delays (5 s between cycles, pop3.interval between purges) times this: a deposited
# lot is taken within ~2 s and the BAL purged every 15 s.
AGENT_SCALE: Final = 0.5
_MARKER: Final = ".balise-demo"
_AGENT_JOIN_S: Final = 30.0
_MAX_DOVECOT_DIR: Final = 70  # + "/r/" + Dovecot's longest socket name stays under 107 bytes

Say = Callable[[str], None]


class DemoError(BaliseError):
    """A component of the demo could not start (the words say which and what to do)."""

    code = GeneralCode.DEMO


# -- the running demo ---------------------------------------------------------------------------


@dataclass
class DemoBox:
    """Everything `balise demo` started, for the kiosk hooks, the agent and the tests."""

    base: Path
    data_dir: Path
    env: dict[str, str]
    pki: TestPKI
    tls: Issued
    softhsm: SoftHSM
    pcscd: PcscdRunner
    link: VirtualReaderLink
    dovecot: DovecotServer
    oct: OctSimulator
    pop3_user: str

    def open_context(self, actor: str) -> Context:
        return open_context(self.data_dir, actor=actor, env=self.env)

    def toggle_card(self) -> str:
        """The demo key: insert the virtual CPS3 card, or remove it; returns the words to show."""
        if self.link.card is None:
            self.link.insert(VirtualCard(ATR_CPS3))
            return f"Carte CPS de démonstration insérée (code {DEMO_PIN})."
        self.link.remove()
        return "Carte CPS de démonstration retirée."

    def bal_count(self) -> int:
        """Messages waiting in the demo BAL right now."""
        return self.dovecot.maildir_count(self.pop3_user)


def help_line_fr() -> str:
    return (
        f"Démo : touche C = insérer/retirer la carte CPS (code {DEMO_PIN}) · "
        f"technicien : « {DEMO_TECHNICIAN_PASSPHRASE} » · Ctrl+Q quitte la démo "
        "(pas une borne) et arrête tout."
    )


def help_line_en() -> str:
    return (
        f"Demo: key C = insert/remove the CPS card (PIN {DEMO_PIN}) · "
        f"technician: “{DEMO_TECHNICIAN_PASSPHRASE}” · Ctrl+Q quits the demo "
        "(not a kiosk) and stops everything."
    )


# -- starting the components -------------------------------------------------------------------


@contextlib.contextmanager
def _step(say: Say, what_fr: str, what_en: str) -> Iterator[None]:
    """Say what starts; turn any failure into a DemoError naming the component."""
    say(f"  … {what_fr}")
    try:
        yield
    except DemoError:
        raise
    except BaliseError as exc:
        raise DemoError(
            f"{what_fr} : impossible — {exc.fr}", f"{what_en}: failed — {exc.en}"
        ) from exc
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        fr, en = failure_words(exc)
        raise DemoError(f"{what_fr} : impossible — {fr}", f"{what_en}: failed — {en}") from exc


def failure_words(exc: BaseException) -> tuple[str, str]:
    """An unexpected failure in words (French, English), never the exception's repr."""
    if isinstance(exc, subprocess.TimeoutExpired):
        program = Path(str(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd)).name
        return (
            f"{program} n'a pas répondu en {exc.timeout:g} s",
            f"{program} did not answer within {exc.timeout:g} s",
        )
    if isinstance(exc, subprocess.CalledProcessError):
        program = Path(str(exc.cmd[0] if isinstance(exc.cmd, list | tuple) else exc.cmd)).name
        return (
            f"{program} a échoué (code {exc.returncode})",
            f"{program} failed (status {exc.returncode})",
        )
    if isinstance(exc, OSError):
        where = f"{exc.filename} : " if exc.filename else ""
        fr, en = os_error_words(exc)
        return f"{where}{fr}", f"{where}{en}"
    text = " ".join(str(exc).split())[:200] or "erreur inattendue"
    return text, text


def _process_line(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip() or "?"


def _check_pcscd_free() -> None:
    if os.geteuid() != 0:
        raise DemoError(
            "La démonstration doit être lancée en root : elle démarre son propre pcscd "
            "(/run/pcscd) et son propre Dovecot.",
            "The demo must run as root: it starts its own pcscd (/run/pcscd) and Dovecot.",
        )
    if find_vpcd_driver() is None:
        raise DemoError(
            "Lecteur virtuel absent : installez le paquet vsmartcard-vpcd (make deps).",
            "Virtual reader missing: install the vsmartcard-vpcd package (make deps).",
        )
    others = running_pcscd_pids()
    if others:
        listed = "; ".join(f"pid {pid} : {_process_line(pid)}" for pid in others)
        raise DemoError(
            f"Un autre pcscd tourne déjà ({listed}). La démonstration a besoin du sien (un seul "
            "pcscd par machine). Arrêtez-le puis relancez : « systemctl stop pcscd.socket "
            f"pcscd » s'il vient de systemd, sinon « kill {' '.join(map(str, others))} ».",
            f"Another pcscd is already running ({listed}). The demo needs its own (one pcscd per "
            "machine). Stop it and start again: `systemctl stop pcscd.socket pcscd` if systemd "
            f"started it, else `kill {' '.join(map(str, others))}`.",
        )


def prepare_base(directory: str | None) -> tuple[Path, bool]:
    """The demo folder and whether we created it. A given folder must be empty, absent, or left
    by an earlier demo (then it is reset)."""
    if not directory:
        return Path(tempfile.mkdtemp(prefix="balise-demo-")), True
    base = Path(directory).expanduser().absolute()
    if base.exists():
        entries = list(base.iterdir())
        if entries and not (base / _MARKER).exists():
            raise DemoError(
                f"Le dossier {base} n'est pas vide et ne vient pas d'une démonstration : "
                "choisissez un dossier vide.",
                f"{base} is not empty and is not a demo folder: choose an empty folder.",
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return base, False
    base.mkdir(mode=0o700, parents=True)
    return base, True


def remove_tree(base: Path, created: bool) -> None:
    if created:
        shutil.rmtree(base, ignore_errors=True)
        return
    for entry in list(base.iterdir()) if base.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def demo_lots(today: date) -> list[tuple[str, bytes]]:
    """Five valid demo lots (flow D, dated yesterday) and one invalid file (wrong lot total)."""
    yesterday = today - timedelta(days=1)
    addressee = "000000" + CPAM[2] + CPAM[3] + CPAM[4]
    lots: list[tuple[str, bytes]] = []
    for number in range(1, DEMO_LOT_COUNT + 1):
        invoices = make_invoices(
            2 + number % 3, seed=number, care_date=yesterday, first_number=100000 + 100 * number
        )
        data = build_lot(
            EMITTER, addressee, number, yesterday, invoices, flow="D", file_id=f"D{number:05d}"
        )
        lots.append((f"demo-lot-{number:03d}.lot", data))
    broken = build_lot(
        EMITTER,
        addressee,
        DEMO_LOT_COUNT + 1,
        yesterday,
        make_invoices(2, seed=99, care_date=yesterday, first_number=200000),
        flow="D",
        file_id="D00099",
    )
    # The lot-end record ("6", record 2 + invoices' records): its total no longer matches.
    records = len(broken) // 128
    lots.append((INVALID_LOT_NAME, patch_record(broken, records - 1, 10, "0000000001")))
    return lots


def drop_lots(exchange_root: Path, lots: list[tuple[str, bytes]]) -> None:
    """As the practice software does: write in depot/tmp, then rename into depot/new."""
    tmp, new = exchange_root / "depot" / "tmp", exchange_root / "depot" / "new"
    tmp.mkdir(parents=True, exist_ok=True)
    new.mkdir(parents=True, exist_ok=True)
    for name, data in lots:
        (tmp / name).write_bytes(data)
        os.rename(tmp / name, new / name)


def start_demo(
    stack: contextlib.ExitStack,
    base: Path,
    *,
    say: Say,
    env: Mapping[str, str] | None = None,
    first_start: bool = False,
) -> DemoBox:
    """Start every component under ``base`` (from the main thread: pcscd follows it); each one's
    stop is pushed on ``stack`` as soon as it runs. ``first_start``: the box as its first boot
    leaves it — no practitioner, so the kiosk opens the setup wizard; the BAL's settings to type
    are in ``<base>/mise-en-service.txt`` (one password for SMTP and POP3, the BAL address as the
    user name, as a mail host gives them)."""
    _check_pcscd_free()
    (base / _MARKER).write_text("Dossier de démonstration Balise\n")
    environ = dict(os.environ if env is None else env)

    with _step(say, "clé de démonstration (KEK)", "demo KEK"):
        kek_file = base / "demo.kek"
        create_key_file(kek_file)
    data_dir = base / "data"
    environ.update(
        BALISE_KEK_FILE=str(kek_file),
        BALISE_HOME=str(data_dir),
        BALISE_EXCHANGE=str(base / "echange"),
    )

    with _step(say, "autorités de test IGC-Santé et certificats", "test PKI"):
        pki = build_pki(base / "pki")
        tls = pki.issue_tls_server("demo loopback servers", [LOOPBACK, "localhost"])

    with _step(say, "carte CPS de démonstration (SoftHSM2)", "demo CPS card (SoftHSM2)"):
        softhsm = SoftHSM(base / "softhsm")
        softhsm.create_token(
            DEMO_TOKEN_LABEL,
            pki.practitioner,
            pin=DEMO_PIN,
            so_pin=DEMO_SO_PIN,
            intermediate=pki.intermediate,
        )
        environ.update(softhsm.env())

    with _step(say, "pcscd et le lecteur virtuel", "pcscd and the virtual reader"):
        pcscd = PcscdRunner(base / "pcscd", die_with_parent=True)
        pcscd.start()
        stack.callback(pcscd.stop)
        link = pcscd.link()
        stack.callback(link.remove)

    pop3_user = BAL if first_start else BAL.split("@", 1)[0]
    pop3_password = secrets.token_urlsafe(18)
    smtp_password = pop3_password if first_start else secrets.token_urlsafe(18)
    dovecot_dir = base / "dovecot"
    if len(str(dovecot_dir)) > _MAX_DOVECOT_DIR:
        # Dovecot's unix sockets live under its directory (107 bytes at most): a short one.
        dovecot_dir = Path(tempfile.mkdtemp(prefix="balise-demo-dovecot-"))
        stack.callback(shutil.rmtree, dovecot_dir, True)
        say(f"  (Dovecot dans {dovecot_dir} : le dossier de démonstration a un chemin trop long)")
    with _step(say, "serveur POP3 Dovecot (127.0.0.1)", "Dovecot POP3 server (127.0.0.1)"):
        dovecot = DovecotServer(
            dovecot_dir,
            cert_pem=tls.cert_pem,
            key_pem=tls.key_pem,
            users={pop3_user: pop3_password},
            pop3_port=free_tcp_port((LOOPBACK,)),
            pop3s_port=free_tcp_port((LOOPBACK,)),
            listen=(LOOPBACK,),
        )
        dovecot.start()
        stack.callback(dovecot.stop)

    with _step(say, "simulateur OCT (SMTP TLS, 127.0.0.1)", "OCT simulator (SMTP TLS, 127.0.0.1)"):
        oct_sim = OctSimulator(
            directory=base / "oct",
            host=LOOPBACK,
            port=free_tcp_port((LOOPBACK,)),
            tls_cert_pem=tls.cert_pem,
            tls_key_pem=tls.key_pem,
            smtp_users={BAL: smtp_password},
            dovecot=dovecot,
            mailbox_for={BAL: pop3_user},
            organisms=[OrganismKey(CPAM[5], pki.amo.key_pem, pki.amo.cert_pem)],
            trusted_roots_der=[pki.root.cert_der.read_bytes()],
        )
        oct_sim.start()
        stack.callback(oct_sim.stop)

    with _step(say, "réglages du boîtier (mode démo)", "box settings (demo mode)"):
        ctx = open_context(data_dir, actor="demo", env=environ)
        try:
            p = ctx.params
            if first_start:
                p.set("mode", "demo")
                configure_organisms(ctx, pki)
            else:
                configure_box(ctx, pki, mode="demo")
            root_pem = pki.root.cert_pem.read_text()
            p.set("ca_bundle", root_pem)
            p.set("igc_roots", root_pem)
            p.set("igc_intermediates", pki.intermediate.cert_pem.read_text())
            p.set("pkcs11_module", str(softhsm.module))
            p.set("technician_passphrase", DEMO_TECHNICIAN_PASSPHRASE)
            # The daily backup runs at the agent's first cycle (into echange/sauvegardes/).
            if not first_start:  # else the wizard makes one and shows it once
                p.set("recovery_passphrase", DEMO_RECOVERY_PASSPHRASE)
            mail = (
                ("smtp.host", LOOPBACK),
                ("smtp.port", str(oct_sim.port)),
                ("smtp.tls", "implicit"),
                ("smtp.user", BAL),
                ("smtp.password", smtp_password),
                ("pop3.host", LOOPBACK),
                ("pop3.port", str(dovecot.pop3s_port)),
                ("pop3.tls", "implicit"),
                ("pop3.user", pop3_user),
                ("pop3.password", pop3_password),
                ("pop3.interval", str(POP3_INTERVAL_S)),
            )
            if not first_start:
                for name, value in mail:
                    p.set(name, value, profile="p1")
            exchange = ctx.exchange(environ)
        finally:
            ctx.close()

    if first_start:
        sheet = base / "mise-en-service.txt"
        sheet.write_text(
            "Mise en service de démonstration : réglages de la BAL à taper dans l'assistant\n"
            f"Adresse de la BAL : {BAL}\n"
            f"Mot de passe de la BAL : {pop3_password}\n"
            f"Serveur SMTP : {LOOPBACK}\nPort SMTP : {oct_sim.port}\nTLS SMTP : implicit\n"
            f"Serveur POP3 : {LOOPBACK}\nPort POP3 : {dovecot.pop3s_port}\nTLS POP3 : implicit\n"
            f"Numéro d'émetteur : {EMITTER}\n"
            f"Code PIN de la carte : {DEMO_PIN}\n",
            encoding="utf-8",
        )
        sheet.chmod(0o600)
        say(f"  Réglages à taper dans l'assistant de mise en service : {sheet}")
    else:
        with _step(say, "lots de démonstration et un courrier indésirable", "demo lots and a spam"):
            drop_lots(exchange.root, demo_lots(date.today()))
            oct_sim.drop_spam(BAL)

    return DemoBox(
        base=base,
        data_dir=data_dir,
        env=environ,
        pki=pki,
        tls=tls,
        softhsm=softhsm,
        pcscd=pcscd,
        link=link,
        dovecot=dovecot,
        oct=oct_sim,
        pop3_user=pop3_user,
    )


# -- the agent -----------------------------------------------------------------------------------


class DemoAgent:
    """The real agent (balise.agent.Agent) in a thread of the demo with its own store connection,
    its delays scaled down so that intake, sending retries and the purge come quickly."""

    def __init__(self, box: DemoBox, *, log: Say, scale: float = AGENT_SCALE) -> None:
        self._box = box
        self._log = log
        self._scale = scale
        self._lock = threading.Lock()
        self._stopping = False
        self._agent: Agent | None = None
        self._thread = threading.Thread(target=self._run, name="balise-demo-agent", daemon=True)
        self.errors: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Let the step in progress finish, then wait (bounded) for the thread."""
        with self._lock:
            self._stopping = True
            agent = self._agent
        if agent is not None:
            agent.stop()
        if self._thread.is_alive():
            self._thread.join(_AGENT_JOIN_S)

    def _run(self) -> None:
        try:
            ctx = self._box.open_context("agent")
            try:
                agent = Agent(ctx, env=self._box.env, interval_scale=self._scale, log=self._log)
                with self._lock:
                    self._agent = agent
                    if self._stopping:
                        agent.stop()
                agent.run()
            finally:
                ctx.close()
        except Exception as exc:  # noqa: BLE001 - reported when the demo ends
            if isinstance(exc, BaliseError):
                self.errors.append(f"[{exc.code}] {exc.fr}")
            else:
                self.errors.append(f"[INTERNAL] {failure_words(exc)[0]}")


def demo_backend(box: DemoBox, ctx: Context, hooks: DemoHooks) -> KioskBackend:
    """The kiosk's backend on the demo box: the virtual reader stands for the USB one."""
    from balise.app.kiosk import build_backend

    return build_backend(ctx, env=box.env, demo=hooks, reader_watcher=DemoReaderWatcher())
