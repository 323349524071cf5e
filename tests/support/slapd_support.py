"""A real OpenLDAP slapd for the tests, standing in for the SESAM-Vitale public directory: a
private slapd.conf and mdb database in a temp dir, listening on 127.0.0.1 only, anonymous read;
entries written with the ldap-utils command line (ldapadd / ldapmodify) as the directory's
administrator, base like the public one."""

from __future__ import annotations

import base64
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from balise.sim.netutil import free_tcp_port
from balise.sim.pki import SesamVitalePKI, build_sesam_vitale
from tests.support.clock import TEST_NOW

SUFFIX = "o=sesam-vitale,c=fr"
TEST_OU = "ou=AC-SESAM-VITALE-TEST-2034," + SUFFIX
ADMIN = "cn=admin," + SUFFIX
_SCHEMAS = ("core", "cosine", "inetorgperson")


class Slapd:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_tcp_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self._password = secrets.token_urlsafe(12)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        db = self.directory / "db"
        db.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "slapd.conf"
        includes = "".join(f"include /etc/ldap/schema/{s}.schema\n" for s in _SCHEMAS)
        conf.write_text(
            includes + f"pidfile {self.directory}/slapd.pid\n"
            f"argsfile {self.directory}/slapd.args\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "database mdb\n"
            "maxsize 67108864\n"
            f'suffix "{SUFFIX}"\n'
            f'rootdn "{ADMIN}"\n'
            f"rootpw {self._password}\n"
            f"directory {db}\n"
            "access to * by * read\n",
            encoding="utf-8",
        )
        log = (self.directory / "slapd.log").open("wb")
        self._proc = subprocess.Popen(
            ["slapd", "-d", "0", "-h", f"{self.url}/", "-f", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError((self.directory / "slapd.log").read_text(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("slapd did not start")
        self._ldap(
            "ldapadd",
            f"dn: {SUFFIX}\nobjectClass: organization\no: sesam-vitale\n\n"
            f"dn: {TEST_OU}\nobjectClass: organizationalUnit\nou: AC-SESAM-VITALE-TEST-2034\n",
        )

    def _ldap(self, tool: str, ldif: str) -> None:
        done = subprocess.run(
            [tool, "-x", "-H", self.url, "-D", ADMIN, "-w", self._password],
            input=ldif.encode("ascii"),
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr.decode(errors="replace"))

    def publish(self, cn: str, values: Sequence[bytes], *, base: str = TEST_OU) -> None:
        """The entry ``cn`` holds exactly ``values`` as userCertificate;binary (created if
        needed; any bytes: garbage too)."""
        dn = f"cn={cn},{base}"
        attrs = "".join(
            f"userCertificate;binary:: {base64.b64encode(v).decode()}\n" for v in values
        )
        try:
            self._ldap(
                "ldapadd",
                f"dn: {dn}\nobjectClass: inetOrgPerson\ncn: {cn}\nsn: {cn.partition('@')[0]}\n"
                + attrs,
            )
        except RuntimeError:
            self._ldap(
                "ldapmodify",
                f"dn: {dn}\nchangetype: modify\nreplace: userCertificate;binary\n{attrs}-\n",
            )

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


@pytest.fixture(scope="session")
def sesam_vitale(tmp_path_factory: pytest.TempPathFactory) -> SesamVitalePKI:
    return build_sesam_vitale(tmp_path_factory.mktemp("sv-pki"), now=TEST_NOW)


@pytest.fixture
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    if shutil.which("slapd") is None:
        pytest.fail("slapd is missing: scripts/ensure-deps installs it (Debian slapd, ldap-utils)")
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
