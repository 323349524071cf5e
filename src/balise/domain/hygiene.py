"""Mailbox hygiene rules (ARCHITECTURE.md, security design): consumer webmail, nominative BAL,
shared BAL, two BALs for one practitioner — findings with words for the technician (pure)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from balise.domain.codes import HygieneCode

Level = Literal["refus", "avertissement"]
REFUSAL: Level = "refus"
WARNING: Level = "avertissement"

# Consumer webmail: exact domains, and "name.*" families (any TLD, or a two-level one like co.uk).
WEBMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "msn.com",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "orange.fr",
        "wanadoo.fr",
        "free.fr",
        "laposte.net",
        "sfr.fr",
    }
)
WEBMAIL_FAMILIES = frozenset({"hotmail", "outlook", "live", "yahoo", "gmx", "protonmail"})
_SECOND_LEVEL = frozenset({"co", "com", "net", "org", "ac"})
# Words of a display name that say nothing about the person (titles, the practice).
_NOT_NAMES = frozenset(
    {"docteur", "doct", "madame", "monsieur", "mme", "mlle", "professeur", "cabinet", "dre"}
)
# The parameters these rules read: a change to any of them may change the findings.
WATCHED = frozenset(
    {
        "display_name",
        "bal_address",
        "smtp.host",
        "pop3.host",
        "rpps",
        "emitter_number",
        "webmail_override",
    }
)


@dataclass(frozen=True, slots=True)
class MailboxProfile:
    """What the rules need to know of one practitioner profile (None = not set)."""

    profile: str
    display_name: str | None = None
    bal_address: str | None = None
    smtp_host: str | None = None
    pop3_host: str | None = None
    rpps: str | None = None
    emitter_number: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One hygiene finding: a stable code, refusal or warning, the profiles named, in words."""

    code: HygieneCode
    level: Level
    profiles: tuple[str, ...]
    fr: str
    en: str

    @property
    def refused(self) -> bool:
        return self.level == REFUSAL


def _labels(host: str) -> list[str]:
    return [label for label in host.strip().strip(".").lower().split(".") if label]


def webmail_domain(host: str) -> str | None:
    """The consumer webmail domain ``host`` belongs to (a BAL domain or a server name), or None."""
    labels = _labels(host)
    for i in range(len(labels)):
        suffix = ".".join(labels[i:])
        if suffix in WEBMAIL_DOMAINS:
            return suffix
        if labels[i] in WEBMAIL_FAMILIES:
            rest = labels[i + 1 :]
            if (len(rest) == 1 and rest[0].isalpha()) or (
                len(rest) == 2 and rest[0] in _SECOND_LEVEL and len(rest[1]) == 2
            ):
                return suffix
    return None


def _fold(text: str) -> str:
    """Lowercase without accents: "Hélène" and "helene" compare equal."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def name_tokens(display_name: str) -> list[str]:
    """The words of a display name that could name the person (≥ 3 letters, no titles)."""
    words = re.findall(r"[a-z]+", _fold(display_name))
    return [w for w in words if len(w) >= 3 and w not in _NOT_NAMES]


def _names(profiles: Iterable[str]) -> tuple[str, str]:
    items = sorted(profiles)
    return ", ".join(items), ", ".join(items)


def check_mailboxes(
    profiles: Sequence[MailboxProfile], *, webmail_override: bool = False
) -> list[Finding]:
    """Every finding over all the practitioner profiles of a box, refusals first."""
    findings: list[Finding] = []
    for prof in profiles:
        findings += _webmail(prof, webmail_override)
        findings += _nominative(prof)
    by_bal: dict[str, list[str]] = {}
    for prof in profiles:
        if prof.bal_address:
            by_bal.setdefault(prof.bal_address.strip().lower(), []).append(prof.profile)
    for bal, owners in sorted(by_bal.items()):
        if len(owners) > 1:
            fr, en = _names(owners)
            findings.append(
                Finding(
                    HygieneCode.HYG_SHARED_BAL,
                    REFUSAL,
                    tuple(sorted(owners)),
                    f"la BAL {bal} est partagée par les profils {fr} : une BAL par praticien, "
                    "jamais partagée",
                    f"mailbox {bal} is shared by profiles {en}: one mailbox per practitioner, "
                    "never shared",
                )
            )
    findings += _two_bals(profiles, "rpps", "RPPS", lambda p: p.rpps)
    findings += _two_bals(profiles, "emitter", "numéro d'émetteur", lambda p: p.emitter_number)
    findings.sort(key=lambda f: (f.level != REFUSAL, f.code, f.profiles))
    return findings


def _webmail(prof: MailboxProfile, override: bool) -> list[Finding]:
    hits: list[tuple[str, str, str]] = []  # (where fr, where en, domain)
    if prof.bal_address and "@" in prof.bal_address:
        domain = webmail_domain(prof.bal_address.rsplit("@", 1)[1])
        if domain:
            hits.append(("adresse de la BAL", "mailbox address", domain))
    for where_fr, where_en, host in (
        ("serveur SMTP", "SMTP server", prof.smtp_host),
        ("serveur POP3", "POP3 server", prof.pop3_host),
    ):
        if host and (domain := webmail_domain(host)):
            hits.append((where_fr, where_en, domain))
    if not hits:
        return []
    fr_items = ", ".join(f"{w} chez {d}" for w, _, d in hits)
    en_items = ", ".join(f"{w} at {d}" for _, w, d in hits)
    if override:
        return [
            Finding(
                HygieneCode.HYG_WEBMAIL,
                WARNING,
                (prof.profile,),
                f"profil {prof.profile} : messagerie grand public ({fr_items}), admise par "
                "dérogation du technicien (webmail_override = oui) — à remplacer par une BAL "
                "professionnelle",
                f"profile {prof.profile}: consumer webmail ({en_items}), allowed by the "
                "technician's override (webmail_override = oui) — replace it with a professional "
                "mailbox",
            )
        ]
    return [
        Finding(
            HygieneCode.HYG_WEBMAIL,
            REFUSAL,
            (prof.profile,),
            f"profil {prof.profile} : messagerie grand public refusée ({fr_items}) ; une BAL "
            "professionnelle est attendue (dérogation possible : webmail_override = oui)",
            f"profile {prof.profile}: consumer webmail refused ({en_items}); a professional "
            "mailbox is expected (override: webmail_override = oui)",
        )
    ]


def _nominative(prof: MailboxProfile) -> list[Finding]:
    if not prof.bal_address or not prof.display_name or "@" not in prof.bal_address:
        return []
    local = _fold(prof.bal_address.rsplit("@", 1)[0])
    found = [t for t in name_tokens(prof.display_name) if t in local]
    if not found:
        return []
    words = ", ".join(f"« {t} »" for t in found)
    words_en = ", ".join(f'"{t}"' for t in found)
    return [
        Finding(
            HygieneCode.HYG_NOMINATIVE,
            WARNING,
            (prof.profile,),
            f"profil {prof.profile} : l'adresse de la BAL {prof.bal_address} contient le nom du "
            f"praticien ({words}) : une adresse non nominative attire moins le courrier "
            "indésirable et survit à un changement de titulaire",
            f"profile {prof.profile}: mailbox address {prof.bal_address} contains the "
            f"practitioner's name ({words_en}): a non-nominative address draws less spam and "
            "outlives a change of holder",
        )
    ]


def _two_bals(
    profiles: Sequence[MailboxProfile],
    key: str,
    words: str,
    get: Callable[[MailboxProfile], str | None],
) -> list[Finding]:
    groups: dict[str, list[MailboxProfile]] = {}
    for prof in profiles:
        value = get(prof)
        if value and prof.bal_address:
            groups.setdefault(value, []).append(prof)
    out: list[Finding] = []
    for value, members in sorted(groups.items()):
        bals = sorted({p.bal_address.lower() for p in members if p.bal_address})
        if len(bals) < 2:
            continue
        fr, en = _names(p.profile for p in members)
        out.append(
            Finding(
                HygieneCode(f"HYG_TWO_BALS_{key.upper()}"),
                WARNING,
                tuple(sorted(p.profile for p in members)),
                f"les profils {fr} ont le même {words} ({value}) mais des BAL différentes "
                f"({', '.join(bals)}) : un praticien, une BAL",
                f"profiles {en} share the same {key} ({value}) but have different mailboxes "
                f"({', '.join(bals)}): one practitioner, one mailbox",
            )
        )
    return out


class ParamReader(Protocol):
    """The read side of the parameters the rules need (the service, or a would-be state)."""

    def text(self, name: str, *, profile: str | None = None) -> str | None:
        """A text parameter; None when unset (or not a text: the rules never refuse a change
        because of another value's type)."""
        ...

    def profile_ids(self) -> list[str]: ...


def read_profiles(reader: ParamReader) -> list[MailboxProfile]:
    """Every practitioner profile as the rules see it."""
    return [
        MailboxProfile(
            profile=p,
            display_name=reader.text("display_name", profile=p),
            bal_address=reader.text("bal_address", profile=p),
            smtp_host=reader.text("smtp.host", profile=p),
            pop3_host=reader.text("pop3.host", profile=p),
            rpps=reader.text("rpps", profile=p),
            emitter_number=reader.text("emitter_number", profile=p),
        )
        for p in reader.profile_ids()
    ]


def findings_for(reader: ParamReader) -> list[Finding]:
    """The findings of the box whose parameters ``reader`` reads."""
    return check_mailboxes(
        read_profiles(reader), webmail_override=reader.text("webmail_override") == "oui"
    )


def new_refusals(before: Sequence[Finding], after: Sequence[Finding]) -> list[Finding]:
    """Refusals present after a change and not before it (an old one never blocks other edits)."""
    old = {(f.code, f.profiles) for f in before if f.refused}
    return [f for f in after if f.refused and (f.code, f.profiles) not in old]


def refuse_new_refusals(name: str, before: ParamReader, after: ParamReader) -> None:
    """A parameter validator: refuse a change of ``name`` that would create a hygiene refusal."""
    from balise.domain.errors import ValidationError

    if name not in WATCHED:
        return
    new = new_refusals(findings_for(before), findings_for(after))
    if new:
        raise ValidationError(
            "changement refusé, rien n'est enregistré : " + " ; ".join(f.fr for f in new),
            "change refused, nothing saved: " + "; ".join(f.en for f in new),
            code=new[0].code,
        )
