"""The SESAM-Vitale public directory over LDAP (ldap3): one anonymous bind, one bounded search for
``(cn=<régime><caisse>@<caisse>.<régime>.rss.fr)`` under the configured base, the
``userCertificate;binary`` values returned as they came. Plain LDAP proves nothing: the caller
validates every certificate against the SESAM-Vitale CA configured on the box before any use."""

from __future__ import annotations

import contextlib
from typing import Any, Final
from urllib.parse import urlsplit

from ldap3 import ANONYMOUS, NONE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException, LDAPNoSuchObjectResult, LDAPSocketOpenError
from ldap3.utils.conv import escape_filter_chars

from balise.domain.codes import TrustCode
from balise.domain.errors import BaliseError

PRODUCTION_BASE: Final = "ou=AC-SESAM-VITALE-2034,o=sesam-vitale,c=fr"
TEST_BASE: Final = "ou=AC-SESAM-VITALE-TEST-2034,o=sesam-vitale,c=fr"
DEFAULT_TIMEOUT_S: Final = 15
MAX_ENTRIES: Final = 8
MAX_VALUE_BYTES: Final = 64 * 1024
_ATTRIBUTE: Final = "userCertificate;binary"


def _unreachable(url: str, why: tuple[str, str]) -> BaliseError:
    return BaliseError(
        f"annuaire {url} injoignable ou en erreur ({why[0]})",
        f"directory {url} unreachable or failing ({why[1]})",
        code=TrustCode.DIRECTORY_UNREACHABLE,
    )


class Ldap3Directory:
    """The OrganismDirectory port over ldap3 (ldap:// only: the answer is validated anyway)."""

    def __init__(self, url: str, base: str, *, timeout: int = DEFAULT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme != "ldap" or not parts.hostname:
            raise ValueError("ldap://host[:port] expected")
        self.url = url
        self.base = base
        self._host = parts.hostname
        self._port = parts.port or 389
        self._timeout = timeout

    def certificates(self, cn: str) -> list[bytes]:
        server = Server(self._host, port=self._port, get_info=NONE, connect_timeout=self._timeout)
        conn = Connection(
            server,
            authentication=ANONYMOUS,
            read_only=True,
            raise_exceptions=True,
            receive_timeout=self._timeout,
        )
        try:
            conn.open()
            conn.bind()
            try:
                conn.search(
                    self.base,
                    f"(cn={escape_filter_chars(cn)})",
                    search_scope=SUBTREE,
                    attributes=[_ATTRIBUTE],
                    size_limit=MAX_ENTRIES,
                    time_limit=self._timeout,
                )
            except LDAPNoSuchObjectResult:
                return []
            found: list[bytes] = []
            for entry in conn.response or []:
                if entry.get("type") != "searchResEntry":
                    continue
                raw: dict[str, Any] = entry.get("raw_attributes") or {}
                for name, values in raw.items():
                    if not name.lower().startswith("usercertificate"):
                        continue
                    found += [bytes(v) for v in values if len(v) <= MAX_VALUE_BYTES]
            return found
        except LDAPSocketOpenError:
            raise _unreachable(self.url, ("connexion impossible", "cannot connect")) from None
        except LDAPException:
            raise _unreachable(self.url, ("réponse LDAP en erreur", "LDAP error answer")) from None
        except OSError:
            raise _unreachable(self.url, ("connexion coupée", "connection lost")) from None
        finally:
            with contextlib.suppress(LDAPException, OSError):
                conn.unbind()
