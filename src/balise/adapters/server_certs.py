"""The ServerCertStore port on the shared store (migration 0009_server_certificates)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from balise.adapters.store import Store
from balise.domain.servercert import MailService, SeenServerCert, ServerCertificate

_COLUMNS = "profile, service, host, port, subject, not_after, der, first_seen, last_seen"


class SqliteServerCertStore:
    """One row per (profile, service): the certificate its server last presented."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._conn = store.conn

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._store.write():
            yield

    def record(
        self,
        profile: str,
        service: MailService,
        host: str,
        port: int,
        cert: ServerCertificate,
        when: str,
    ) -> bool:
        with self._store.write():
            row = self._conn.execute(
                "SELECT der, first_seen FROM server_certs WHERE profile = ? AND service = ?",
                (profile, service),
            ).fetchone()
            same = row is not None and bytes(row[0]) == cert.der
            first = str(row[1]) if same else when
            self._conn.execute(
                f"INSERT OR REPLACE INTO server_certs ({_COLUMNS}) "  # noqa: S608 — fixed columns
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    profile,
                    service,
                    host,
                    port,
                    cert.subject,
                    cert.not_after.isoformat(),
                    cert.der,
                    first,
                    when,
                ),
            )
        return not same

    def all(self) -> list[SeenServerCert]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM server_certs ORDER BY profile, service"  # noqa: S608
        ).fetchall()
        return [
            SeenServerCert(
                profile=str(r[0]),
                service=cast(MailService, str(r[1])),
                host=str(r[2]),
                port=int(r[3]),
                subject=str(r[4]),
                not_after=str(r[5]),
                der=bytes(r[6]),
                first_seen=str(r[7]),
                last_seen=str(r[8]),
            )
            for r in rows
        ]
