"""Short HTTP(S) GETs for public, signed material (CRLs): stdlib urllib, an explicit verifying
ssl.SSLContext (TLS >= 1.2) for https, no proxy from the environment, no redirect followed, the
answer bounded in size and time. Plain http is fine for what carries its own signature: what
comes back is verified by the caller before any use."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Final
from urllib.parse import urlsplit

from balise.adapters.tls import client_context
from balise.domain.codes import TrustCode
from balise.domain.errors import BaliseError

DEFAULT_TIMEOUT_S: Final = 30.0
# IGC-Santé CRLs are a few MiB at most; a larger answer is no CRL of ours.
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024
_CHUNK: Final = 64 * 1024


def _failed(url: str, fr: str, en: str) -> BaliseError:
    return BaliseError(f"{url} : {fr}", f"{url}: {en}", code=TrustCode.FETCH_FAILED)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None  # the 3xx is then raised as an HTTPError


class UrllibFetcher:
    """The HttpFetcher port over urllib."""

    def __init__(
        self,
        *,
        ca_pem: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        user_agent: str = "balise",
    ) -> None:
        self._context = client_context(ca_pem)
        self._timeout = timeout
        self._max = max_bytes
        self._agent = user_agent
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPSHandler(context=self._context),
            _NoRedirect(),
        )

    def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _failed(
                url, "seules les adresses http:// et https:// sont prises en charge",
                "only http:// and https:// addresses are supported",
            )  # fmt: skip
        request = urllib.request.Request(  # noqa: S310 — the scheme is checked just above
            url, headers={"User-Agent": self._agent, "Connection": "close"}
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as answer:
                data = bytearray()
                while len(data) <= self._max:
                    chunk = answer.read(_CHUNK)
                    if not chunk:
                        break
                    data += chunk
        except urllib.error.HTTPError as exc:
            raise _failed(
                url, f"le serveur a répondu {exc.code}", f"the server answered {exc.code}"
            ) from None
        except ssl.SSLError as exc:
            raise _failed(
                url, f"TLS refusé ({exc.reason or 'certificat non vérifié'})",
                f"TLS refused ({exc.reason or 'certificate not verified'})",
            ) from None  # fmt: skip
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            if isinstance(reason, ssl.SSLError):
                raise _failed(
                    url,
                    "TLS refusé (certificat non vérifié)",
                    "TLS refused (certificate not verified)",
                ) from None
            raise _failed(
                url, f"serveur injoignable ({reason})", f"server unreachable ({reason})"
            ) from None
        if len(data) > self._max:
            raise _failed(
                url, f"réponse de plus de {self._max} octets refusée",
                f"answer over {self._max} bytes refused",
            )  # fmt: skip
        return bytes(data)
