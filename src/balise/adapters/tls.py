"""The ONE place a client TLS context is made (SMTP, POP3, HTTPS fetches).

Verified, explicitly: the server's certificate must chain to the roots the settings choose
(``ca_bundle``; none set = the system's store) and name the host; TLS 1.2 at least. Never
``poplib``/``urllib``'s defaults (poplib without a context verifies nothing)."""

from __future__ import annotations

import ssl
from collections.abc import Sequence


def client_context(ca_pem: Sequence[str] = ()) -> ssl.SSLContext:
    """A verifying client context trusting ``ca_pem`` (PEM certificates) or, when empty, the
    system's trust store; hostname checked, certificate required, TLS >= 1.2."""
    # The configured roots ONLY when given (the system's store is then not loaded at all).
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cadata="".join(ca_pem) if ca_pem else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context
