"""An independent reader of Balise backup archives, written from docs/backup-format.md alone.

It imports nothing of Balise (tests/test_backup_reader.py checks it): only the standard library,
``cryptography`` (Argon2id, HKDF, AES-GCM, AES key wrap) and ``zstandard``. If the adapter and
this reader ever disagree, the document is what settles it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

MAGIC = bytes.fromhex("42414C5341560001")
TAG = 16
WINDOW_MAX = 8 * 1024 * 1024
BLOCK = 256 * 1024


class ArchiveRefused(Exception):
    """The reader refuses the archive; ``why`` is "passphrase" or "damaged"."""

    def __init__(self, why: str, detail: str) -> None:
        super().__init__(f"{why}: {detail}")
        self.why = why


def _damaged(detail: str) -> ArchiveRefused:
    return ArchiveRefused("damaged", detail)


def _b64(text: Any, size: int | None = None) -> bytes:
    if not isinstance(text, str):
        raise _damaged("base64 field is not a string")
    raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    if size is not None and len(raw) != size:
        raise _damaged("base64 field of the wrong length")
    return raw


def _int(value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _damaged(f"{what} out of bounds")
    return value


@dataclass(frozen=True)
class Header:
    raw: bytes  # the JSON as stored
    fields: dict[str, Any]
    digest: bytes  # H: SHA-256(MAGIC || HEADER_LEN || HEADER), the chunks' associated data
    chunks_at: int  # offset of chunk 0

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self.fields["manifest"])


def parse_header(handle: BinaryIO) -> Header:
    """Section 1, 2 and checklist step 1."""
    if handle.read(8) != MAGIC:
        raise _damaged("bad magic")
    length_bytes = handle.read(4)
    if len(length_bytes) != 4:
        raise _damaged("no header length")
    length = int.from_bytes(length_bytes, "big")
    if not 2 <= length <= 65536:
        raise _damaged("header length out of bounds")
    raw = handle.read(length)
    stored = handle.read(32)
    if len(raw) != length or len(stored) != 32:
        raise _damaged("header truncated")
    digest = hashlib.sha256(MAGIC + length_bytes + raw).digest()
    if not hmac.compare_digest(digest, stored):
        raise _damaged("header checksum")
    try:
        fields = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise _damaged("header is not JSON") from exc
    if not isinstance(fields, dict):
        raise _damaged("header is not an object")
    form = fields.get("format")
    if form not in (1, 2):
        raise _damaged("unknown format")
    if form == 2 and fields.get("compression") != "zstd":
        raise _damaged("unknown compression")
    kdf = fields.get("kdf")
    if not isinstance(kdf, dict) or kdf.get("alg") != "argon2id" or kdf.get("v") != 19:
        raise _damaged("unknown KDF")
    lanes = _int(kdf.get("p"), 1, 16, "p")
    _int(kdf.get("m"), 8 * lanes, 1048576, "m")
    _int(kdf.get("t"), 1, 32, "t")
    salt = _b64(kdf.get("salt"))
    if not 8 <= len(salt) <= 64:
        raise _damaged("salt length")
    _b64(fields.get("nonce"), 32)
    _b64(fields.get("check"), 32)
    _int(fields.get("chunk_size"), 1024, 16777216, "chunk_size")
    manifest = fields.get("manifest")
    if not isinstance(manifest, dict):
        raise _damaged("no manifest")
    _int(manifest.get("payload_size"), 0, 2**40, "payload_size")
    return Header(raw, fields, digest, 8 + 4 + length + 32)


def _hkdf(master: bytes, nonce: bytes, info: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=info.encode()).derive(master)


@dataclass(frozen=True)
class Keys:
    payload: bytes
    wrap: bytes


def derive_keys(header: Header, passphrase: str) -> Keys:
    """Section 3: Argon2id master key, HKDF keys, constant-time check."""
    kdf = header.fields["kdf"]
    master = Argon2id(
        salt=_b64(kdf["salt"]),
        length=32,
        iterations=kdf["t"],
        lanes=kdf["p"],
        memory_cost=kdf["m"],
    ).derive(passphrase.encode("utf-8"))
    nonce = _b64(header.fields["nonce"], 32)
    check = _hkdf(master, nonce, "balise backup check v1")
    if not hmac.compare_digest(check, _b64(header.fields["check"], 32)):
        raise ArchiveRefused("passphrase", "key check differs")
    return Keys(
        _hkdf(master, nonce, "balise backup payload v1"),
        _hkdf(master, nonce, "balise backup vault wrap v1"),
    )


def plaintext_chunks(handle: BinaryIO, header: Header, keys: Keys) -> Iterator[bytes]:
    """Section 4: the pieces of ``chunk_size + 16`` bytes, the last one sealed with F = 1."""
    size = header.fields["chunk_size"]
    piece = size + TAG
    aead = AESGCM(keys.payload)
    handle.seek(header.chunks_at)
    current = handle.read(piece)
    index = 0
    while True:
        ahead = handle.read(piece) if len(current) == piece else b""
        last = ahead == b""
        if len(current) < TAG:
            raise _damaged(f"piece {index} shorter than a tag")
        nonce = index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            plain = aead.decrypt(nonce, current, header.digest)
        except InvalidTag as exc:
            raise _damaged(f"piece {index} fails authentication") from exc
        if last and len(plain) == size:
            raise _damaged("last piece is full: truncated")
        yield plain
        if last:
            return
        index += 1
        current = ahead


class _Pieces(io.RawIOBase):
    """The plaintext chunks as a raw stream (what zstandard streams from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            following = next(self._chunks, None)
            if following is None:
                return 0
            self._left = following
        size = min(len(buffer), len(self._left))
        buffer[:size] = self._left[:size]
        self._left = self._left[size:]
        return size


def payload(handle: BinaryIO, header: Header, keys: Keys) -> Iterator[bytes]:
    """Section 5 (format 2) or 6 (format 1): the database, block by block, bounded by the
    manifest's size. The caller checks size and SHA-256 at the end (checklist step 5)."""
    chunks = plaintext_chunks(handle, header, keys)
    limit = header.fields["manifest"]["payload_size"]
    if header.fields["format"] == 1:
        yield from chunks
        return
    pieces = io.BufferedReader(_Pieces(chunks), buffer_size=BLOCK)
    reader = zstandard.ZstdDecompressor(max_window_size=WINDOW_MAX).stream_reader(
        pieces, read_size=BLOCK, read_across_frames=True
    )
    total = 0
    while True:
        try:
            block = reader.read(min(BLOCK, limit - total + 1))
        except zstandard.ZstdError as exc:
            raise _damaged("zstd stream unreadable") from exc
        if not block:
            break
        total += len(block)
        if total > limit:
            raise _damaged("payload longer than the manifest says")
        yield block
    if pieces.read(1) != b"" or next(chunks, None) is not None:
        raise _damaged("bytes after the zstd stream")


def extract_database(archive: Path, passphrase: str, out: Path) -> Header:
    """Checklist steps 1–5: write the database to ``out`` (absent), or raise ArchiveRefused
    and leave nothing there."""
    partial = out.with_name(out.name + ".partial")
    with archive.open("rb") as handle:
        header = parse_header(handle)
        keys = derive_keys(header, passphrase)
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("xb") as sink:
                for block in payload(handle, header, keys):
                    digest.update(block)
                    size += len(block)
                    sink.write(block)
            manifest = header.fields["manifest"]
            if size != manifest["payload_size"] or digest.hexdigest() != manifest.get(
                "payload_sha256"
            ):
                raise _damaged("payload differs from the manifest")
            os.rename(partial, out)
        finally:
            partial.unlink(missing_ok=True)
    return header


def vault_data_key(header: Header, passphrase: str, wrapped: bytes) -> bytes:
    """Section 5: the vault's data key from ``vault_keys.wrapped`` (RFC 3394 under K_wrap)."""
    return aes_key_unwrap(derive_keys(header, passphrase).wrap, wrapped)


def vault_value(data_key: bytes, scope_id: str, name: str, nonce: bytes, ciphertext: bytes) -> Any:
    """Section 5: one vault value, decrypted and parsed from its JSON."""
    aad = b"balise-vault-v1\0" + scope_id.encode("utf-8") + b"\0" + name.encode("utf-8")
    return json.loads(AESGCM(data_key).decrypt(nonce, ciphertext, aad).decode("utf-8"))
