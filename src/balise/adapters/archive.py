"""The backup archive file format: Argon2id master key → HKDF per-archive keys → AES-256-GCM chunks.

Layout (all integers big-endian)::

    MAGIC (8) | header length (4) | header (canonical JSON) | SHA-256 of the three before (32)
    | chunk 0 | chunk 1 | ... | final chunk

The header carries its format, the Argon2id parameters and salt, a random 32-byte archive nonce, a
key-check value and the manifest. Every chunk is AES-256-GCM over ``chunk_size`` plaintext bytes
(the final one shorter, possibly empty) with the nonce ``index (11 bytes) || final flag (1 byte)``
and the header's SHA-256 as associated data — the STREAM construction of age: reordering,
truncation, extension or any edited byte fails authentication. The unkeyed header checksum tells a
damaged header from a wrong passphrase (only the keyed check says "wrong passphrase").

Formats (the header's ``format``):

- 1 (archives made before compression; still read, verified and restored): the chunks' plaintext
  is the SQLite database itself.
- 2 (what the box writes): the chunks' plaintext is ONE Zstandard frame of the database
  (``compression: "zstd"``) — compressed, then encrypted, streamed block by block: neither the
  database nor the archive is ever held in memory. Decompression is bounded: it stops with
  BACKUP_DAMAGED as soon as the output passes the manifest's ``payload_size`` (itself at most
  :data:`MAX_PAYLOAD`), and a frame asking for a window above :data:`MAX_WINDOW` is refused, so a
  hostile archive can neither expand without limit nor make the reader allocate much.

Compressing before encrypting leaks the compressed length, which depends on the content, some of
which outsiders choose (mail they send, lot files dropped in the exchange account). That is
harmless here: an archive is made from the whole database once a day (or when a key is plugged),
never on an outsider's demand, so there is no oracle to query many times with adaptive content
next to a secret (what CRIME/BREACH need); and the secrets in the database (the vault's values,
the copies of mail) are themselves ciphertext, whose compressed size tells nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from balise.domain.backup import WrongPassphrase
from balise.domain.codes import BackupCode
from balise.domain.errors import ConfigError, IntegrityError, ValidationError, os_error_words

MAGIC = b"BALSAV\x00\x01"
FORMAT_PLAIN = 1  # read only: the database itself in the chunks (archives made before format 2)
FORMAT_ZSTD = 2  # one Zstandard frame of the database in the chunks
FORMAT = FORMAT_ZSTD
ZSTD_LEVEL = 3
# Decompression bounds: what a frame may ask for its window (level 3 uses 2 MiB on a large
# database), and the largest database a manifest may declare (far above what the box's disk,
# 16 to 256 GB, can hold).
MAX_WINDOW = 8 * 1024 * 1024
MAX_PAYLOAD = 1024**4
DEFAULT_CHUNK = 1024 * 1024
READ_BLOCK = 1024 * 1024
MAX_HEADER = 64 * 1024
TAG = 16
# Bounds on KDF parameters read from an untrusted header (a forged header must not make the box
# allocate gigabytes or spin for hours before refusing).
MAX_MEMORY_KIB = 1024 * 1024
MAX_ITERATIONS = 32
MAX_LANES = 16
MIN_CHUNK, MAX_CHUNK = 1024, 16 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("base64 text expected")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters and salt (as stored in the vault's PHC string and the header)."""

    memory_kib: int
    iterations: int
    lanes: int
    salt: bytes

    def as_json(self) -> dict[str, Any]:
        return {
            "alg": "argon2id",
            "v": 19,
            "m": self.memory_kib,
            "t": self.iterations,
            "p": self.lanes,
            "salt": _b64(self.salt),
        }

    @classmethod
    def from_json(cls, data: object) -> KdfParams:
        if not isinstance(data, dict) or data.get("alg") != "argon2id" or data.get("v") != 19:
            raise ValueError("unknown KDF")
        m, t, p = data.get("m"), data.get("t"), data.get("p")
        if not (isinstance(m, int) and isinstance(t, int) and isinstance(p, int)):
            raise ValueError("KDF parameters must be integers")
        if not (8 * p <= m <= MAX_MEMORY_KIB and 1 <= t <= MAX_ITERATIONS and 1 <= p <= MAX_LANES):
            raise ValueError("KDF parameters out of bounds")
        salt = _unb64(data.get("salt"))
        if not 8 <= len(salt) <= 64:
            raise ValueError("bad salt")
        return cls(m, t, p, salt)


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The Argon2id output of the recovery passphrase, with the parameters that made it."""

    key: bytes
    kdf: KdfParams

    def __repr__(self) -> str:  # never show the key
        return f"MasterKey(kdf={self.kdf!r})"


def master_from_phc(encoded: str) -> MasterKey:
    """The master key from the vault's ``$argon2id$v=19$m=..,t=..,p=..$salt$hash`` string."""
    parts = encoded.split("$")
    try:
        if len(parts) != 6 or parts[1] != "argon2id" or parts[2] != "v=19":
            raise ValueError("not an Argon2id PHC string")
        fields = dict(item.split("=", 1) for item in parts[3].split(","))
        kdf = KdfParams(int(fields["m"]), int(fields["t"]), int(fields["p"]), _unb64(parts[4]))
        key = _unb64(parts[5])
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            "phrase de passe de secours illisible dans le coffre",
            "recovery passphrase unreadable in the vault",
            code=BackupCode.BACKUP_PASSPHRASE_INVALID,
        ) from exc
    if len(key) != 32:
        raise ConfigError(
            "phrase de passe de secours : clé dérivée de longueur inattendue",
            "recovery passphrase: derived key of unexpected length",
            code=BackupCode.BACKUP_PASSPHRASE_INVALID,
        )
    return MasterKey(key, kdf)


def derive_master(passphrase: str, kdf: KdfParams) -> MasterKey:
    key = Argon2id(
        salt=kdf.salt,
        length=32,
        iterations=kdf.iterations,
        lanes=kdf.lanes,
        memory_cost=kdf.memory_kib,
    ).derive(passphrase.encode("utf-8"))
    return MasterKey(key, kdf)


def _hkdf(master: bytes, nonce: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=info).derive(master)


@dataclass(frozen=True, slots=True)
class ArchiveKeys:
    """The keys of one archive, all derived from the master key and the archive nonce."""

    payload: bytes
    check: bytes
    vault_wrap: bytes

    def __repr__(self) -> str:
        return "ArchiveKeys(…)"

    @classmethod
    def derive(cls, master: MasterKey, nonce: bytes) -> ArchiveKeys:
        return cls(
            _hkdf(master.key, nonce, b"balise backup payload v1"),
            _hkdf(master.key, nonce, b"balise backup check v1"),
            _hkdf(master.key, nonce, b"balise backup vault wrap v1"),
        )


@dataclass(frozen=True, slots=True)
class Header:
    """The parsed archive header; ``digest`` is the associated data of every chunk."""

    kdf: KdfParams
    nonce: bytes
    check: bytes
    chunk_size: int
    manifest: dict[str, Any]
    digest: bytes
    payload_offset: int
    format: int = FORMAT


def _damaged(fr: str, en: str) -> IntegrityError:
    return IntegrityError(
        f"archive endommagée ou modifiée : {fr}",
        f"archive damaged or modified: {en}",
        code=BackupCode.BACKUP_DAMAGED,
    )


def _chunk_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def write_archive(
    out: BinaryIO,
    source: BinaryIO,
    master: MasterKey,
    nonce: bytes,
    manifest: dict[str, Any],
    *,
    chunk_size: int = DEFAULT_CHUNK,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Compress ``source`` (the manifest's ``payload_size`` bytes) and encrypt it into ``out``,
    block by block (format 2); returns the number of bytes written."""
    keys = ArchiveKeys.derive(master, nonce)
    header = {
        "format": FORMAT_ZSTD,
        "compression": "zstd",
        "kdf": master.kdf.as_json(),
        "nonce": _b64(nonce),
        "check": _b64(keys.check),
        "chunk_size": chunk_size,
        "manifest": manifest,
    }
    body = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    if len(body) > MAX_HEADER:
        raise ValidationError(
            "manifeste trop grand", "manifest too large", code=BackupCode.BACKUP_HEADER
        )
    prefix = MAGIC + len(body).to_bytes(4, "big") + body
    digest = hashlib.sha256(prefix).digest()
    out.write(prefix + digest)
    sealer = _Sealer(out, AESGCM(keys.payload), digest, chunk_size, on_chunk)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    for block in iter(lambda: source.read(READ_BLOCK), b""):
        sealer.feed(compressor.compress(block))
    sealer.feed(compressor.flush())
    sealer.close()
    return len(prefix) + len(digest) + sealer.written


class _Sealer:
    """Cuts a stream into ``chunk_size`` chunks and seals each as it is full; the final chunk is
    shorter (empty when the stream ends on a chunk boundary), so truncation is always seen."""

    def __init__(
        self,
        out: BinaryIO,
        aead: AESGCM,
        digest: bytes,
        chunk_size: int,
        on_chunk: Callable[[int], None] | None,
    ) -> None:
        self._out, self._aead, self._digest = out, aead, digest
        self._chunk_size, self._on_chunk = chunk_size, on_chunk
        self._pending = bytearray()
        self._index = 0
        self.written = 0

    def feed(self, data: bytes) -> None:
        self._pending += data
        # A full chunk is sealed as not final only once a byte beyond it is known to exist.
        while len(self._pending) > self._chunk_size:
            self._seal(bytes(self._pending[: self._chunk_size]), final=False)
            del self._pending[: self._chunk_size]

    def close(self) -> None:
        if len(self._pending) == self._chunk_size:
            self._seal(bytes(self._pending), final=False)
            self._pending.clear()
        self._seal(bytes(self._pending), final=True)
        self._pending.clear()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_chunk_nonce(self._index, final), plain, self._digest)
        self._out.write(sealed)
        self.written += len(sealed)
        if self._on_chunk is not None:
            self._on_chunk(self._index)
        self._index += 1


def read_header(handle: BinaryIO) -> Header:
    """Parse and checksum the header (no key needed); raises BACKUP_DAMAGED on any defect."""
    magic = handle.read(len(MAGIC))
    if magic != MAGIC:
        raise _damaged("ce n'est pas une sauvegarde Balise", "not a Balise backup")
    raw_len = handle.read(4)
    if len(raw_len) != 4:
        raise _damaged("en-tête tronqué", "truncated header")
    length = int.from_bytes(raw_len, "big")
    if not 2 <= length <= MAX_HEADER:
        raise _damaged("longueur d'en-tête invalide", "invalid header length")
    body = handle.read(length)
    stored = handle.read(32)
    prefix = magic + raw_len + body
    digest = hashlib.sha256(prefix).digest()
    if len(body) != length or not hmac.compare_digest(stored, digest):
        raise _damaged("en-tête altéré (somme de contrôle)", "header altered (checksum)")
    try:
        data = json.loads(body)
        version = data.get("format")
        if version not in (FORMAT_PLAIN, FORMAT_ZSTD):
            raise ValueError("unknown format")
        if version == FORMAT_ZSTD and data.get("compression") != "zstd":
            raise ValueError("unknown compression")
        kdf = KdfParams.from_json(data.get("kdf"))
        nonce = _unb64(data.get("nonce"))
        check = _unb64(data.get("check"))
        chunk_size = data.get("chunk_size")
        manifest = data.get("manifest")
        if len(nonce) != 32 or len(check) != 32:
            raise ValueError("bad nonce or check")
        if not isinstance(chunk_size, int) or not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
            raise ValueError("bad chunk size")
        if not isinstance(manifest, dict):
            raise ValueError("bad manifest")
        size = manifest.get("payload_size")
        if version == FORMAT_ZSTD and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAYLOAD
        ):
            raise ValueError("bad payload size")
    except (ValueError, AttributeError) as exc:
        raise _damaged("en-tête illisible", "header unreadable") from exc
    return Header(kdf, nonce, check, chunk_size, manifest, digest, len(prefix) + 32, version)


def check_key(header: Header, master: MasterKey) -> ArchiveKeys:
    """The archive keys if ``master`` opens this archive, else WrongPassphrase."""
    keys = ArchiveKeys.derive(master, header.nonce)
    if not hmac.compare_digest(keys.check, header.check):
        raise WrongPassphrase
    return keys


def decrypt_chunks(handle: BinaryIO, header: Header, keys: ArchiveKeys) -> Iterator[bytes]:
    """Yield each authenticated plaintext chunk; any defect raises BACKUP_DAMAGED at once."""
    handle.seek(header.payload_offset)
    aead = AESGCM(keys.payload)
    size = header.chunk_size + TAG
    index = 0
    block = handle.read(size)
    while True:
        following = handle.read(size) if len(block) == size else b""
        final = not following
        if len(block) < TAG:
            raise _damaged("archive tronquée", "archive truncated")
        try:
            plain = aead.decrypt(_chunk_nonce(index, final), block, header.digest)
        except InvalidTag as exc:
            raise _unauthenticated(aead, header, index, block, final) from exc
        if final and len(plain) == header.chunk_size:
            raise _damaged("archive tronquée", "archive truncated")
        yield plain
        if final:
            return
        index += 1
        block = following


def _unauthenticated(
    aead: AESGCM, header: Header, index: int, block: bytes, final: bool
) -> IntegrityError:
    """Why a chunk failed, in the words a person needs: a last chunk that opens as a middle one
    means the file was cut after it (a copy interrupted, a key pulled out too soon)."""
    if final and len(block) == header.chunk_size + TAG:
        try:
            aead.decrypt(_chunk_nonce(index, False), block, header.digest)
        except InvalidTag:
            pass
        else:
            return _damaged(
                f"archive tronquée : elle s'arrête après le bloc {index} (copie interrompue ?)",
                f"archive truncated: it ends after chunk {index} (copy interrupted?)",
            )
    if final:
        return _damaged(
            f"dernier bloc (n° {index}) non authentifié : archive tronquée ou modifiée",
            f"last chunk ({index}) failed authentication: archive truncated or modified",
        )
    return _damaged(f"bloc {index} non authentifié", f"chunk {index} failed authentication")


def payload_blocks(handle: BinaryIO, header: Header, keys: ArchiveKeys) -> Iterator[bytes]:
    """The archived database, block by block (at most :data:`READ_BLOCK` bytes each), whatever
    the format. Format 2: decompressed within the bounds of the module's docstring. Any defect
    raises BACKUP_DAMAGED, at the latest when the iteration ends (the final chunk is
    authenticated then): a caller acts on what it read only once it has read it all, and checks
    it against the manifest's SHA-256 and size."""
    chunks = decrypt_chunks(handle, header, keys)
    if header.format == FORMAT_PLAIN:
        yield from chunks
        return
    limit = int(header.manifest["payload_size"])
    source = io.BufferedReader(_ChunkReader(chunks), buffer_size=READ_BLOCK)
    reader = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW).stream_reader(
        source, read_size=READ_BLOCK, read_across_frames=True, closefd=False
    )
    total = 0
    with reader:
        while True:
            try:
                # One byte more than declared is enough to see a payload that is too long.
                block = reader.read(min(READ_BLOCK, limit - total + 1))
            except zstandard.ZstdError as exc:
                raise _damaged(
                    "contenu compressé illisible", "compressed content unreadable"
                ) from exc
            if not block:
                break
            total += len(block)
            if total > limit:
                raise _damaged(
                    "contenu plus long que le manifeste ne le déclare",
                    "content longer than the manifest declares",
                )
            yield block
    if total != limit or source.read(1) or any(chunks):
        raise _damaged("contenu incomplet", "content incomplete")


class _ChunkReader(io.RawIOBase):
    """The decrypted chunks as a raw binary stream (what the decompressor reads from)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._current:
            following = next(self._chunks, None)
            if following is None:
                return 0
            self._current = memoryview(following)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


def authenticate_header(handle: BinaryIO, header: Header, keys: ArchiveKeys) -> None:
    """Prove the header, manifest included, without reading the whole archive: the first
    chunk's tag covers the header's SHA-256 (its associated data), and only the holder of the
    master key could make it. Raises BACKUP_DAMAGED."""
    next(decrypt_chunks(handle, header, keys))


def open_archive(path: Path) -> tuple[BinaryIO, Header]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ConfigError(
            f"archive illisible : {path} ({os_error_words(exc)[0]})",
            f"archive unreadable: {path} ({os_error_words(exc)[1]})",
            code=BackupCode.BACKUP_UNREADABLE,
        ) from exc
    try:
        return handle, read_header(handle)
    except BaseException:
        handle.close()
        raise


def new_nonce() -> bytes:
    return os.urandom(32)
