"""Parameter use cases: set (validated, encrypted, journaled), get (secrets masked), list, rotate."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from balise.domain.errors import ValidationError
from balise.domain.params import (
    SCHEMA,
    ParamSpec,
    Scope,
    Value,
    check_scope_id,
    parse_value,
    spec_for,
)
from balise.ports import Clock, Journal, Vault

MASK = "********"

# Argon2id settings (RFC 9106 second recommendation, lighter memory for a Raspberry Pi).
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_ITERATIONS = 3
ARGON2_LANES = 4


def hash_passphrase(passphrase: str, salt: bytes) -> str:
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=ARGON2_ITERATIONS,
        lanes=ARGON2_LANES,
        memory_cost=ARGON2_MEMORY_KIB,
    )
    return kdf.derive_phc_encoded(passphrase.encode("utf-8"))


def verify_passphrase(passphrase: str, encoded: str) -> bool:
    try:
        Argon2id.verify_phc_encoded(passphrase.encode("utf-8"), encoded)
    except Exception:  # noqa: BLE001 — any failure (format or mismatch) is a refusal
        return False
    return True


def scope_key(scope: Scope, ident: str) -> str:
    return "" if scope is Scope.GLOBAL else f"{scope.value}:{ident}"


@dataclass(frozen=True, slots=True)
class ParamRow:
    scope: Scope
    ident: str
    name: str
    shown: str


class ParamView:
    """A read-only view of the parameters, optionally with one change applied (the would-be state
    a validator judges before anything is written)."""

    def __init__(
        self, vault: Vault, change: tuple[str, str, Value] | None = None, *, created: str = ""
    ) -> None:
        self._vault = vault
        self._change = change  # (scope key, name, value)
        self._created = created  # a profile id the change creates

    def value(
        self, name: str, *, profile: str | None = None, organism: str | None = None
    ) -> Value | None:
        spec = spec_for(name, profile=profile, organism=organism)
        key = scope_key(spec.scope, check_scope_id(spec.scope, profile or organism))
        if self._change is not None and self._change[:2] == (key, spec.name):
            return self._change[2]
        value = self._vault.get(key, spec.name)
        return spec.default if value is None else value

    def profile_ids(self) -> list[str]:
        prefix = f"{Scope.PROFILE.value}:"
        ids = {s[len(prefix) :] for s, _ in self._vault.names() if s.startswith(prefix)}
        if self._created:
            ids.add(self._created)
        return sorted(ids)


# Called with (parameter name, state before, would-be state after); raises a BaliseError to refuse.
ParamValidator = Callable[[str, ParamView, ParamView], None]


class ParameterService:
    """The only way parameters are read and written; every change is journaled, never a secret."""

    def __init__(
        self,
        vault: Vault,
        journal: Journal,
        clock: Clock,
        validators: Sequence[ParamValidator] = (),
    ) -> None:
        self._vault = vault
        self._journal = journal
        self._clock = clock
        self._validators = tuple(validators)

    def view(self) -> ParamView:
        """The current parameters, secrets included (for checks such as mailbox hygiene)."""
        return ParamView(self._vault)

    def set(
        self, name: str, raw: str, *, profile: str | None = None, organism: str | None = None
    ) -> ParamSpec:
        spec = spec_for(name, profile=profile, organism=organism)
        ident = check_scope_id(spec.scope, profile or organism)
        value = parse_value(spec, raw, self._clock.now())
        stored: Value = value
        if spec.hashed:
            salt = os.urandom(16)
            stored = hash_passphrase(str(value), salt)
        key = scope_key(spec.scope, ident)
        with self._vault.transaction():
            created = spec.scope is not Scope.GLOBAL and not any(
                s == key for s, _ in self._vault.names()
            )
            if self._validators:
                new = ParamView(
                    self._vault,
                    (key, spec.name, stored),
                    created=ident if spec.scope is Scope.PROFILE else "",
                )
                for validator in self._validators:
                    validator(spec.name, ParamView(self._vault), new)
            self._vault.put(key, spec.name, stored)
            details: dict[str, str | bool | int | None] = {
                "name": spec.name,
                "scope": spec.scope.value,
            }
            if ident:
                details["id"] = ident
            if spec.secret:
                details["value"] = "(masqué)"
            elif isinstance(value, list):
                details["value"] = f"{len(value)} élément(s)"
            else:
                details["value"] = value
            if created:
                self._journal.append(f"{spec.scope.value}.created", key, {"id": ident})
            self._journal.append("param.set", f"{key or 'global'}/{spec.name}", details)
        return spec

    def get(
        self,
        name: str,
        *,
        profile: str | None = None,
        organism: str | None = None,
        reveal: bool = False,
    ) -> Value | None:
        spec = spec_for(name, profile=profile, organism=organism)
        ident = check_scope_id(spec.scope, profile or organism)
        value = self._vault.get(scope_key(spec.scope, ident), spec.name)
        if value is None:
            return spec.default
        if spec.secret and not reveal:
            return MASK
        return value

    def value(
        self, name: str, *, profile: str | None = None, organism: str | None = None
    ) -> Value | None:
        """Internal read (secrets included) for services that need them, e.g. to log in."""
        return self.get(name, profile=profile, organism=organism, reveal=True)

    def check_passphrase(self, name: str, candidate: str) -> bool:
        spec = spec_for(name, profile=None, organism=None)
        if not spec.hashed:
            raise ValidationError("pas une phrase de passe", "not a passphrase", code="PARAM_SCOPE")
        encoded = self._vault.get("", spec.name)
        return isinstance(encoded, str) and verify_passphrase(candidate, encoded)

    def ids(self, scope: Scope) -> list[str]:
        prefix = f"{scope.value}:"
        return sorted({s[len(prefix) :] for s, _ in self._vault.names() if s.startswith(prefix)})

    def rows(self) -> list[ParamRow]:
        """Every parameter set, secrets masked, certificates summarized."""
        out: list[ParamRow] = []
        for key, name in self._vault.names():
            scope = Scope.GLOBAL if not key else Scope(key.split(":", 1)[0])
            ident = key.split(":", 1)[1] if key else ""
            spec = SCHEMA.get((scope, name))
            if spec is None:
                continue
            value = self._vault.get(key, name)
            out.append(ParamRow(scope, ident, name, show(spec, value)))
        return out


def show(spec: ParamSpec, value: Value | None) -> str:
    if value is None:
        return "(non défini)"
    if spec.secret:
        return MASK
    if isinstance(value, list):
        if value and value[0].startswith("-----BEGIN CERTIFICATE"):
            return f"{len(value)} certificat(s)"
        return ", ".join(value) if value else "(vide)"
    return str(value)
