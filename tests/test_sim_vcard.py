"""The virtual card's side of the vpcd protocol, checked from a peer playing vpcd (no pcscd needed)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from balise.sim.vcard import (
    ATR_CPS3,
    ATR_CPS4_T0,
    VirtualCard,
    VirtualCardError,
    VirtualReaderLink,
)


@pytest.fixture
def vpcd_peer() -> Iterator[socket.socket]:
    """A listening socket on loopback standing where vpcd listens."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(3.0)
    try:
        yield server
    finally:
        server.close()


def send(peer: socket.socket, payload: bytes) -> None:
    peer.sendall(len(payload).to_bytes(2, "big") + payload)


def receive(peer: socket.socket) -> bytes:
    header = peer.recv(2, socket.MSG_WAITALL)
    assert len(header) == 2
    return peer.recv(int.from_bytes(header, "big"), socket.MSG_WAITALL)


def test_card_answers_vpcd_messages(vpcd_peer: socket.socket) -> None:
    card = VirtualCard(ATR_CPS4_T0, lambda apdu: apdu[-1:] + bytes.fromhex("9000"))
    with VirtualReaderLink(vpcd_peer.getsockname()[1]) as link:
        link.insert(card)
        peer, _ = vpcd_peer.accept()
        peer.settimeout(3.0)
        with peer:
            send(peer, b"\x01")  # power on: no reply expected
            send(peer, b"\x04")
            assert receive(peer) == ATR_CPS4_T0
            assert card.powered
            send(peer, bytes.fromhex("00B0000042"))
            assert receive(peer) == bytes.fromhex("429000")
            assert card.apdus == [bytes.fromhex("00B0000042")]
            link.remove()
            assert peer.recv(1) == b""  # vpcd reads the closed connection as "card removed"
    assert link.card is None


def test_one_card_per_slot(vpcd_peer: socket.socket) -> None:
    with VirtualReaderLink(vpcd_peer.getsockname()[1]) as link:
        link.insert(VirtualCard(ATR_CPS3))
        with pytest.raises(VirtualCardError):
            link.insert(VirtualCard(ATR_CPS3))


def test_unreachable_reader_is_reported() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    link = VirtualReaderLink(port, connect_timeout=0.2)
    with pytest.raises(VirtualCardError) as excinfo:
        link.insert(VirtualCard(ATR_CPS3))
    assert excinfo.value.code == "SIM_VCARD"
    assert link.card is None


def test_atr_length_is_checked() -> None:
    with pytest.raises(VirtualCardError):
        VirtualCard(bytes(34))
