"""Parameter use cases: set (validated, encrypted, journaled), get (secrets masked), list, rotate.

:class:`ParameterService` is the ONE way a parameter changes, whoever changes it — ``balise params
set`` (and provision.yml, which runs it), the kiosk's technician mode, the first-start wizard and
a practitioner's self-service with their card: the schema's validation, the mailbox hygiene rules
(:func:`balise.domain.hygiene.refuse_new_refusals`, always on) and a journal entry naming who
made the change (``by``) are applied here, so a rule is never checked in one path and forgotten
in another."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from balise.domain.codes import ParamCode
from balise.domain.errors import ValidationError
from balise.domain.hygiene import refuse_new_refusals
from balise.domain.journal import JsonValue
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
from balise.services.settings import lenient_text

MASK = "********"
# Destinations a connection test holds open in the firewall (not a schema parameter: rows() and
# ids() skip it), and for how long.
EGRESS_HOLD_NAME = "egress.held"
EGRESS_HOLD = timedelta(minutes=10)

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
    """A read-only view of the parameters, optionally with changes applied (the would-be state
    a validator judges before anything is written)."""

    def __init__(
        self,
        vault: Vault,
        changes: Mapping[tuple[str, str], Value] | None = None,
        *,
        created: Iterable[str] = (),
    ) -> None:
        self._vault = vault
        self._changes = dict(changes or {})  # (scope key, name) -> value
        self._created = frozenset(created)  # profile ids the changes create

    def value(
        self, name: str, *, profile: str | None = None, organism: str | None = None
    ) -> Value | None:
        spec = spec_for(name, profile=profile, organism=organism)
        key = scope_key(spec.scope, check_scope_id(spec.scope, profile or organism))
        if (key, spec.name) in self._changes:
            return self._changes[(key, spec.name)]
        value = self._vault.get(key, spec.name)
        return spec.default if value is None else value

    def text(self, name: str, *, profile: str | None = None) -> str | None:
        """A text parameter, None when unset or not a text (see :func:`lenient_text`)."""
        return lenient_text(self.value(name, profile=profile))

    def profile_ids(self) -> list[str]:
        prefix = f"{Scope.PROFILE.value}:"
        ids = {s[len(prefix) :] for s, _ in self._vault.names() if s.startswith(prefix)}
        return sorted(ids | self._created)


@dataclass(frozen=True, slots=True)
class Change:
    """One parameter change as typed (the raw text the schema parses)."""

    name: str
    raw: str = field(repr=False)
    profile: str | None = None
    organism: str | None = None


# Called with (parameter name, state before, would-be state after); raises a BaliseError to refuse.
ParamValidator = Callable[[str, ParamView, ParamView], None]
# Applied to every change whatever the path (the mailbox hygiene rules).
ALWAYS: tuple[ParamValidator, ...] = (refuse_new_refusals,)


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
        self._validators = ALWAYS + tuple(v for v in validators if v not in ALWAYS)

    def view(self) -> ParamView:
        """The current parameters, secrets included (for checks such as mailbox hygiene)."""
        return ParamView(self._vault)

    def set(
        self,
        name: str,
        raw: str,
        *,
        profile: str | None = None,
        organism: str | None = None,
        by: str | None = None,
    ) -> ParamSpec:
        """One change (see :meth:`apply`)."""
        return self.apply([Change(name, raw, profile, organism)], by=by)[0]

    def apply(self, changes: Sequence[Change], *, by: str | None = None) -> list[ParamSpec]:
        """Several changes saved together or not at all: each value parsed by the schema, then
        the validators (mailbox hygiene) judge the state with ALL of them applied, then one
        transaction writes them, each journaled (never a secret) with ``by``, who made it (a
        practitioner's RPPS read from their card, "technicien", "cli", "provision")."""
        now = self._clock.now()
        parsed: list[tuple[ParamSpec, str, str, Value, Value]] = []
        for change in changes:
            spec = spec_for(change.name, profile=change.profile, organism=change.organism)
            ident = check_scope_id(spec.scope, change.profile or change.organism)
            value = parse_value(spec, change.raw, now)
            stored: Value = value
            if spec.hashed:
                stored = hash_passphrase(str(value), os.urandom(16))
            parsed.append((spec, ident, scope_key(spec.scope, ident), value, stored))
        with self._vault.transaction():
            existing = {s for s, _ in self._vault.names()}
            created: list[tuple[ParamSpec, str, str]] = []
            for spec, ident, key, _value, _stored in parsed:
                new = spec.scope is not Scope.GLOBAL and key not in existing
                if new and all(k != key for _, _, k in created):
                    created.append((spec, ident, key))
            before = ParamView(self._vault)
            after = ParamView(
                self._vault,
                {(key, spec.name): stored for spec, _, key, _, stored in parsed},
                created=[i for spec, i, _ in created if spec.scope is Scope.PROFILE],
            )
            for name in dict.fromkeys(spec.name for spec, *_ in parsed):
                for validator in self._validators:
                    validator(name, before, after)
            for spec, ident, key in created:
                self._journal.append(f"{spec.scope.value}.created", key, _who({"id": ident}, by))
            for spec, ident, key, value, stored in parsed:
                self._vault.put(key, spec.name, stored)
                details: dict[str, JsonValue] = {"name": spec.name, "scope": spec.scope.value}
                if ident:
                    details["id"] = ident
                if spec.secret:
                    details["value"] = "(masqué)"
                elif isinstance(value, list):
                    details["value"] = f"{len(value)} élément(s)"
                else:
                    details["value"] = value
                self._journal.append(
                    "param.set", f"{key or 'global'}/{spec.name}", _who(details, by)
                )
        return [spec for spec, *_ in parsed]

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
            raise ValidationError(
                "pas une phrase de passe", "not a passphrase", code=ParamCode.PARAM_SCOPE
            )
        encoded = self._vault.get("", spec.name)
        return isinstance(encoded, str) and verify_passphrase(candidate, encoded)

    def hold_egress(
        self, destinations: Sequence[tuple[str, int]], *, by: str | None = None
    ) -> None:
        """Let the box's firewall open ``destinations`` (host, port) for EGRESS_HOLD before they
        are saved: a connection test of typed settings must reach servers no parameter names
        yet (`balise egress list` adds them while the hold lasts; written to the database, so
        the egress unit reloads at once). Journaled, with who asked."""
        until = self._clock.now() + EGRESS_HOLD
        items = sorted({f"{host}:{port}" for host, port in destinations})
        with self._vault.transaction():
            self._vault.put("", EGRESS_HOLD_NAME, [until.isoformat(), *items])
            self._journal.append(
                "egress.held", "connection-test", _who({"destinations": list(items)}, by)
            )

    def held_egress(self) -> list[tuple[str, int]]:
        """The destinations a connection test holds open now (none once the hold is over)."""
        value = self._vault.get("", EGRESS_HOLD_NAME)
        if not isinstance(value, list) or not value:
            return []
        try:
            until = datetime.fromisoformat(value[0])
        except ValueError:
            return []
        if until <= self._clock.now():
            return []
        out = []
        for item in value[1:]:
            host, _, port = item.rpartition(":")
            if host and port.isdigit():
                out.append((host, int(port)))
        return out

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


def _who(details: dict[str, JsonValue], by: str | None) -> dict[str, JsonValue]:
    if by:
        details["by"] = by
    return details


def editable(spec: ParamSpec, value: Value | None) -> str:
    """The text a technician edits a parameter from: none for a secret, a list or nothing."""
    if spec.secret or value is None or isinstance(value, list):
        return ""
    return str(value)


def as_json(value: Value | None) -> JsonValue:
    """A value as `balise params get --json` gives it: a list as a list, unset as null, else text."""
    if value is None or isinstance(value, list):
        return None if value is None else list(value)
    return str(value)


def as_lines(value: Value) -> str:
    """A value as `balise params get` prints it: a list one item a line ("(vide)" if empty)."""
    if isinstance(value, list):
        return "\n".join(value) if value else "(vide)"
    return str(value)


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
