"""The parameter vault: AES-256-GCM per value, under a random data key wrapped by the KEK."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from balise.adapters.kek import Kek
from balise.adapters.store import Store
from balise.domain.codes import StoreCode
from balise.domain.errors import ConfigError, IntegrityError
from balise.domain.params import Value, decode_value, encode_value


def _aad(scope_id: str, name: str) -> bytes:
    # Binding the ciphertext to its name and scope: a value moved to another name or profile
    # fails authentication instead of being silently accepted.
    return b"balise-vault-v1\0" + scope_id.encode("utf-8") + b"\0" + name.encode("utf-8")


class SqliteVault:
    """Encrypted parameters in the store; the data key is unwrapped once per process."""

    def __init__(self, store: Store, kek: Kek) -> None:
        self._store = store
        self._kek = kek
        self._dek: tuple[int, bytes] | None = None

    def __repr__(self) -> str:
        return f"SqliteVault(kek={self._kek.fingerprint})"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._store.write():
            yield

    def _unwrap(self, wrapped: bytes, fingerprint: str) -> bytes:
        try:
            return aes_key_unwrap(self._kek.key, wrapped)
        except InvalidUnwrap as exc:
            raise ConfigError(
                "la clé de chiffrement (KEK) ne correspond pas à ce coffre "
                f"(attendue {fingerprint}, fournie {self._kek.fingerprint})",
                "the key-encryption key (KEK) does not match this vault "
                f"(expected {fingerprint}, given {self._kek.fingerprint})",
                code=StoreCode.KEK_MISMATCH,
            ) from exc

    def check_key(self) -> None:
        """Unwrap the active data key now (a wrong KEK is refused before anything else)."""
        row = self._store.conn.execute(
            "SELECT id, wrapped, kek_fingerprint FROM vault_keys WHERE active = 1"
        ).fetchone()
        if row is not None:
            self._dek = (int(row[0]), self._unwrap(bytes(row[1]), str(row[2])))

    def _active_key(self) -> tuple[int, bytes]:
        if self._dek is None:
            self.check_key()
        if self._dek is None:
            with self._store.write():
                self.check_key()  # another process may have created it meanwhile
                if self._dek is None:
                    self._dek = self._new_key()
        return self._dek

    def _new_key(self) -> tuple[int, bytes]:
        dek = AESGCM.generate_key(bit_length=256)
        cur = self._store.conn.execute(
            "INSERT INTO vault_keys(wrapped, kek_fingerprint, created, active) VALUES (?, ?, ?, 1)",
            (aes_key_wrap(self._kek.key, dek), self._kek.fingerprint, _now()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid, dek

    def put(self, scope_id: str, name: str, value: Value) -> None:
        key_id, dek = self._active_key()
        nonce = os.urandom(12)
        ciphertext = AESGCM(dek).encrypt(nonce, encode_value(value), _aad(scope_id, name))
        with self._store.write():
            self._store.conn.execute(
                "INSERT INTO vault(scope_id, name, key_id, nonce, ciphertext, updated) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(scope_id, name) DO UPDATE SET "
                "key_id = excluded.key_id, nonce = excluded.nonce, "
                "ciphertext = excluded.ciphertext, updated = excluded.updated",
                (scope_id, name, key_id, nonce, ciphertext, _now()),
            )

    def get(self, scope_id: str, name: str) -> Value | None:
        row = self._store.conn.execute(
            "SELECT key_id, nonce, ciphertext FROM vault WHERE scope_id = ? AND name = ?",
            (scope_id, name),
        ).fetchone()
        if row is None:
            return None
        key_id, dek = self._active_key()
        if int(row[0]) != key_id:
            raise IntegrityError(
                f"entrée du coffre illisible : {name} ({scope_id or 'global'}) — clé inconnue",
                f"vault entry unreadable: {name} ({scope_id or 'global'}) — unknown key",
                code=StoreCode.VAULT_CORRUPT,
            )
        try:
            plain = AESGCM(dek).decrypt(bytes(row[1]), bytes(row[2]), _aad(scope_id, name))
            return decode_value(plain)
        except (InvalidTag, ValueError) as exc:
            raise IntegrityError(
                f"entrée du coffre corrompue : {name} ({scope_id or 'global'}), "
                "échec de l'authentification",
                f"vault entry corrupted: {name} ({scope_id or 'global'}), authentication failed",
                code=StoreCode.VAULT_CORRUPT,
            ) from exc

    def delete(self, scope_id: str, name: str) -> None:
        with self._store.write():
            self._store.conn.execute(
                "DELETE FROM vault WHERE scope_id = ? AND name = ?", (scope_id, name)
            )

    def names(self) -> list[tuple[str, str]]:
        rows = self._store.conn.execute("SELECT scope_id, name FROM vault ORDER BY scope_id, name")
        return [(str(r[0]), str(r[1])) for r in rows]

    def rotate(self, new_kek: Kek | None = None) -> int:
        """A new data key (and optionally a new KEK): every entry re-encrypted in one transaction."""
        with self._store.write():
            self.check_key()
            entries = [(s, n, self.get(s, n)) for s, n in self.names()]
            self._store.conn.execute("UPDATE vault_keys SET active = 0 WHERE active = 1")
            if new_kek is not None:
                self._kek = new_kek
            self._dek = self._new_key()
            for scope_id, name, value in entries:
                assert value is not None
                self.put(scope_id, name, value)
            self._store.conn.execute("DELETE FROM vault_keys WHERE active = 0")
        return len(entries)

    @property
    def kek_fingerprint(self) -> str:
        return self._kek.fingerprint


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
