"""Fixtures for the test PKI and the SoftHSM2 token standing in for the CPS card.

``pki`` and ``softhsm`` are built once per session; ``token`` gives each test a fresh token.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Protocol

import pytest

from balise.sim.pki import Practitioner, TestPKI, build_pki
from balise.sim.softhsm import SoftHSM, TokenInfo
from tests.support.clock import TEST_NOW

TEST_PIN = "1234"
TEST_SO_PIN = "87654321"

_token_numbers = itertools.count(1)


def reload_softhsm_tokens(softhsm: SoftHSM) -> None:
    """Make the in-process SoftHSM2 library see tokens created or deleted by softhsm2-util.

    SoftHSM2 scans its token directory only in C_Initialize: a token made by another process
    afterwards is invisible, and one deleted under it makes C_GetTokenInfo fail (GeneralError).
    C_Finalize + C_Initialize rescans, and closes every open session, so call this only between
    uses of the token, never while a session is open.
    """
    import pkcs11

    # The exact path string matters: python-pkcs11 caches libraries by it (see balise.sim.softhsm).
    pkcs11.lib(str(softhsm.module)).reinitialize()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """The session's test PKI: root, intermediate, practitioner 10001234567, AMO and AMC, issued
    at the test clock."""
    return build_pki(tmp_path_factory.mktemp("pki"), now=TEST_NOW)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHSM]:
    """A private SoftHSM2 instance; SOFTHSM2_CONF points at it for the whole session (the
    library reads it in C_Initialize, once per process), restored afterwards."""
    hsm = SoftHSM(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ.update(hsm.env())
    try:
        yield hsm
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


class MakeToken(Protocol):
    def __call__(
        self,
        practitioner: Practitioner | None = None,
        *,
        pin: str = TEST_PIN,
        issuer: TestPKI | None = None,
    ) -> TokenInfo: ...


@pytest.fixture
def make_token(softhsm: SoftHSM, pki: TestPKI) -> Iterator[MakeToken]:
    """Factory: ``make_token(practitioner=None, pin=TEST_PIN, issuer=None)`` creates a token
    with a unique label (default: the practitioner of ``issuer``, by default the session's
    ``pki``, with that PKI's intermediate CA certificate), reloads the in-process library so it is
    visible, and deletes every token it made after the test."""
    labels: list[str] = []

    def create(
        practitioner: Practitioner | None = None,
        *,
        pin: str = TEST_PIN,
        issuer: TestPKI | None = None,
    ) -> TokenInfo:
        hierarchy = pki if issuer is None else issuer
        label = f"CPS TEST {next(_token_numbers):04d}"
        info = softhsm.create_token(
            label,
            practitioner if practitioner is not None else hierarchy.practitioner,
            pin=pin,
            so_pin=TEST_SO_PIN,
            intermediate=hierarchy.intermediate,
        )
        labels.append(label)
        reload_softhsm_tokens(softhsm)
        return info

    try:
        yield create
    finally:
        if labels:
            # Deleting keeps the token directory small: every softhsm2-util/pkcs11-tool run loads
            # all tokens, so token creation slows down linearly with the number left behind.
            for label in labels:
                softhsm.delete_token(label)
            reload_softhsm_tokens(softhsm)


@pytest.fixture
def token(softhsm: SoftHSM, make_token: MakeToken) -> tuple[SoftHSM, TokenInfo]:
    """A fresh token for ``pki.practitioner`` (auth id 01, signature id 02, intermediate id 10),
    PIN ``TEST_PIN``, deleted after the test."""
    return softhsm, make_token()
