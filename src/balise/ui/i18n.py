"""The kiosk's words: one catalogue, French first and complete, English complete too.

``t(key, **values)`` formats the entry of the current language; ``pick(fr, en)`` chooses between
words that come ready in both languages from the core (errors, verdicts)."""

from __future__ import annotations

from typing import Literal

Lang = Literal["fr", "en"]

FR: dict[str, str] = {
    # keys shown in the footer
    "key.sign": "Signer",
    "key.lots": "Lots",
    "key.returns": "Retours",
    "key.alerts": "Alertes",
    "key.technician": "Technicien",
    "key.back": "Retour",
    "key.continue": "Continuer",
    "key.confirm": "Confirmer",
    "key.cancel": "Annuler",
    "key.toggle": "Cocher",
    "key.detail": "Détail",
    "key.ack": "Acquitter",
    "key.card_demo": "Carte (démo)",
    "key.leave": "Quitter le mode technicien",
    "key.params": "Paramètres",
    "key.doctor": "Vérifications",
    "key.trust": "Certificats",
    "key.journal": "Journal",
    "key.cancel_lot": "Annuler le lot",
    "key.resend": "Renvoyer le lot",
    "key.stop": "Arrêter",
    "key.quit": "Quitter",
    # kiosk-wide
    "app.title": "Balise — télétransmission",
    "kiosk.no_quit": "Borne : cette touche ne quitte pas Balise.",
    "kiosk.idle": "Inactivité : retour à l'accueil, la saisie est effacée.",
    "kiosk.error": "Erreur : {why}",
    "yes": "oui",
    "no": "non",
    # Accueil
    "home.title": "Accueil",
    "home.loading": "Chargement…",
    "home.reader.none": "Lecteur : aucun lecteur de carte branché",
    "home.reader.some": "Lecteur : {names}",
    "home.card": "Carte : {words}",
    "home.profile": "{name} : {ready} prêt(s) à signer · {signed} à envoyer · "
    "{sent} envoyé(s) sans ARL · {done} accusé(s) · {rejected} rejeté(s)",
    "home.no_profile": "Aucun praticien configuré : appelez le technicien.",
    "home.network": "Réseau {name} : {words}",
    "home.purge": "Relève de la messagerie : dernière {last} · prochaine {next}",
    "home.never": "jamais",
    "home.unknown": "inconnue",
    "home.alerts.none": "Alertes : aucune",
    "home.alerts.some": "Alertes : {n} à lire (touche A)",
    "home.alerts.trust": "Alertes : {n} à lire (touche A), dont {trust} sur les certificats ou "
    "les listes de révocation",
    "home.backup.none": "Sauvegarde : aucune sauvegarde réussie — appelez le technicien",
    "home.backup.hours": "Sauvegarde : dernière réussie il y a {n} h",
    "home.backup.days": "Sauvegarde : dernière réussie il y a {n} jours",
    "home.clock_unsync": "Horloge non synchronisée : la signature attend la synchronisation "
    "de l'heure (NTP).",
    "home.disk_full": "Disque plein ({n} Mio libres) : rien de nouveau n'est enregistré, rien "
    "n'est effacé de la messagerie ; appelez votre technicien.",
    "home.protection_weak": "Protection faible : la clé des données est sur le même support "
    "que les données.",
    "home.hint": "Insérez votre carte CPS puis appuyez sur S pour signer.",
    "home.provisioning_open": "Fenêtre de provisionnement ouverte (administration par SSH depuis "
    "le réseau du cabinet) : fermeture dans {n} min au plus tard.",
    # signing flow
    "sign.title": "Signature des lots",
    "sign.need_reader": "Branchez le lecteur de carte.",
    "sign.need_card": "Insérez votre carte CPS dans le lecteur.",
    "sign.reading": "Lecture de la carte…",
    "sign.refused": "Signature impossible : {why}",
    "sign.clock": "Horloge non synchronisée : la signature est bloquée jusqu'à la "
    "synchronisation de l'heure (NTP), car la date de signature serait fausse.",
    "sign.who": "Carte de {name} (RPPS {rpps})",
    "sign.for": "Peut signer pour : {profiles}",
    "sign.cert": "Certificat : {words}",
    "sign.tries": "Essais restants : {n}",
    "sign.final_try": "DERNIER ESSAI : un code faux bloquera la carte.",
    "sign.choose_profile": "Pour quel praticien signer ?",
    "sign.pin.title": "Code de la carte (PIN)",
    "sign.pin.help": "Tapez votre code puis Entrée (chiffres masqués). Échap : abandonner.",
    "sign.pin.keypad": "Tapez votre code sur le clavier du lecteur au moment de signer.",
    "sign.pin.format": "Le code fait 4 à 8 chiffres.",
    "sign.no_lots": "Aucun lot prêt à signer pour {name}.",
    "sign.lots.title": "Lots à signer pour {name}",
    "sign.lots.help": "Espace : cocher ou décocher · Entrée : continuer · Échap : abandonner.",
    "sign.lot_line": "Lot {number} du {date} — {invoices} facture(s), {total} → {organism}",
    "sign.confirm": "Signer {n} lot(s) pour {name} avec la carte de {holder} ?",
    "sign.confirm.help": "Entrée : signer · Échap : abandonner.",
    "sign.signing": "Signature en cours : {done}/{total} lot(s)",
    "sign.sending": "Envoi en cours vers la messagerie de {name}…",
    "sign.summary": "Bilan",
    "sign.signed": "{n} lot(s) signé(s).",
    "sign.not_signed": "{n} lot(s) non signé(s) : ils restent prêts.",
    "sign.stopped": "Arrêt : {why}",
    "sign.sent": "{n} lot(s) envoyé(s).",
    "sign.waiting": "{n} lot(s) en attente de réseau : ils partiront automatiquement ({why}).",
    "sign.remove_card": "Retirez votre carte.",
    "sign.card_removed": "Carte retirée : signature abandonnée.",
    "sign.reader_gone": "Lecteur débranché : signature abandonnée.",
    "sign.aborted": "Signature abandonnée : rien n'a été signé.",
    "sign.enter_done": "Entrée : retour à l'accueil.",
    # Lots
    "lots.title": "Lots",
    "lots.empty": "Aucun lot.",
    "lots.col.id": "N°",
    "lots.col.state": "État",
    "lots.col.profile": "Praticien",
    "lots.col.lot": "Lot",
    "lots.col.date": "Date",
    "lots.col.invoices": "Factures",
    "lots.col.total": "Montant",
    "lots.col.organism": "Organisme",
    "lots.quarantine": "Fichiers refusés (non transmis) : {n}",
    "lots.refused": "{name} reçu le {date} : {reasons}",
    "lots.count": "{total} lot(s) · lignes {first} à {last} · Début / Fin : premier / dernier",
    "list.window": "lignes {first} à {last} sur {total} · Début / Fin : première / dernière",
    "lot.title": "Lot n° {id}",
    "lot.line": "Lot {number} du {date} · {invoices} facture(s) · {total} · {organism}",
    "lot.state": "État : {state}",
    "lot.signer": "Signé par : {signer}",
    "lot.history": "Historique",
    "lot.returns": "Retours",
    "lot.payments": "Paiements",
    "state.ready": "prêt à signer",
    "state.signed": "signé",
    "state.sending": "en cours d'envoi",
    "state.sent": "envoyé",
    "state.acknowledged": "accusé reçu (ARL positif)",
    "state.rejected": "rejeté (ARL négatif)",
    "state.cancelled": "annulé",
    # Retours
    "returns.title": "Retours",
    "returns.empty": "Aucun retour reçu.",
    "returns.col.date": "Reçu le",
    "returns.col.kind": "Type",
    "returns.col.lot": "Lot",
    "returns.col.words": "Résultat",
    "payments.title": "Paiements et rejets par facture",
    "payments.empty": "Aucun paiement reçu.",
    "payments.col.invoice": "Facture",
    "payments.col.amo": "AMO",
    "payments.col.amc": "AMC",
    "payments.col.reasons": "Motifs",
    "payment.state.P": "payé",
    "payment.state.R": "rejeté",
    "payment.state.D": "différé",
    # Alertes
    "alerts.title": "Alertes",
    "alerts.empty": "Aucune alerte à lire.",
    "alerts.col.id": "N°",
    "alerts.col.date": "Date",
    "alerts.col.words": "Alerte",
    "alerts.acked": "Alerte n° {id} acquittée.",
    "alerts.cert": "Certificats",
    # technician
    "tech.title": "Mode technicien",
    "tech.passphrase": "Phrase de passe technicien",
    "tech.passphrase.help": "Tapez la phrase de passe puis Entrée. Échap : retour.",
    "tech.create": "Aucune phrase de passe technicien : choisissez-en une (10 caractères au "
    "moins), puis tapez-la une seconde fois.",
    "tech.create.again": "Tapez la même phrase de passe une seconde fois.",
    "tech.create.mismatch": "Les deux saisies diffèrent : recommencez.",
    "tech.create.short": "10 caractères au moins.",
    "tech.created": "Phrase de passe enregistrée.",
    "tech.wrong": "Phrase de passe incorrecte ({n} échec(s)). Prochain essai dans {s} s.",
    "tech.wait": "Attendez {s} s avant le prochain essai.",
    "tech.locked": "Trop d'échecs : mode technicien bloqué jusqu'à {until}.",
    "tech.checking": "Vérification…",
    "tech.intro": "P : paramètres · D : vérifications · J : journal · L : lots · "
    "C : certificats · O : fenêtre de provisionnement",
    "tech.trust.none": "Aucun organisme ni autorité configuré.",
    "tech.params.profile": "Praticien {profile}",
    "tech.params.none": "Aucun praticien configuré.",
    "tech.hygiene.warn": "Attention : {words}",
    "tech.hygiene.refuse": "Refusé : {words}",
    "tech.doctor.ok": "OK",
    "tech.doctor.warn": "ATTENTION",
    "tech.doctor.problem": "PROBLÈME",
    "tech.journal.ok": "Journal intègre : {count} entrées.",
    "tech.journal.broken": "Journal rompu : {words}",
    "tech.journal.head": "Tête (à recopier) : {hash}",
    "tech.lots.help": "X : annuler le lot choisi · E : renvoyer un lot en retard",
    "tech.confirm_cancel": "Annuler définitivement le lot n° {id} ?",
    "tech.confirm_resend": "Renvoyer le lot n° {id} (mêmes octets, même Message-ID) ?",
    "tech.cancelled": "Lot n° {id} annulé.",
    "tech.resent": "Lot n° {id} remis en envoi.",
    "tech.confirm.help": "Entrée : confirmer · Échap : ne rien faire.",
    "key.window": "Fenêtre de provisionnement (30 min)",
    "key.window_close": "Fermer la fenêtre",
    "tech.window.confirm": "Ouvrir la fenêtre de provisionnement pendant 30 minutes ? "
    "L'administration par SSH (clé du technicien seulement) sera joignable depuis le réseau "
    "du cabinet, puis fermée d'elle-même.",
    "tech.window.opening": "Ouverture de la fenêtre de provisionnement…",
    "tech.window.closing": "Fermeture de la fenêtre de provisionnement…",
    "tech.window.open": "Fenêtre de provisionnement OUVERTE — reste {left}",
    "tech.window.address": "Adresse du boîtier : {addresses} — port SSH {port}",
    "tech.window.fingerprint": "Empreinte de la clé SSH : {fingerprint}",
    "tech.window.check": "Sur votre portable, « ssh-keyscan -p {port} -t ed25519 {address} | "
    "ssh-keygen -lf - » doit afficher la même empreinte ; sinon n'allez pas plus loin. "
    "Lancez ensuite provision.yml : il ferme la fenêtre à la fin.",
    "tech.window.closed": "Fenêtre de provisionnement fermée.",
    "tech.window.closed.deadline": "Fenêtre de provisionnement fermée : le délai est écoulé.",
    "tech.window.no_answer": "Le service de la fenêtre de provisionnement ne répond pas : "
    "réessayez, ou redémarrez le boîtier.",
    "tech.window.error": "La fenêtre de provisionnement n'a pas pu s'ouvrir : {why}.",
    "tech.window.why.no-interface": "aucune interface sur le réseau du cabinet",
    "tech.window.why.no-address": "pas d'adresse sur le réseau du cabinet (câble ? DHCP ?)",
    "tech.window.why.other": "erreur {code} du service, voir le journal du système",
    "tech.window.help": "O : ouvrir (ou revoir) la fenêtre · F : la fermer maintenant.",
    "tech.window.requested": "Ouverture demandée.",
    "tech.window.close_requested": "Fermeture demandée.",
}

EN: dict[str, str] = {
    "key.sign": "Sign",
    "key.lots": "Lots",
    "key.returns": "Returns",
    "key.alerts": "Alerts",
    "key.technician": "Technician",
    "key.back": "Back",
    "key.continue": "Continue",
    "key.confirm": "Confirm",
    "key.cancel": "Cancel",
    "key.toggle": "Tick",
    "key.detail": "Detail",
    "key.ack": "Acknowledge",
    "key.card_demo": "Card (demo)",
    "key.leave": "Leave technician mode",
    "key.params": "Parameters",
    "key.doctor": "Checks",
    "key.trust": "Certificates",
    "key.journal": "Journal",
    "key.cancel_lot": "Cancel lot",
    "key.resend": "Resend lot",
    "key.stop": "Stop",
    "key.quit": "Quit",
    "app.title": "Balise — teletransmission",
    "kiosk.no_quit": "Kiosk: this key does not quit Balise.",
    "kiosk.idle": "Idle: back to the home screen, what was typed is forgotten.",
    "kiosk.error": "Error: {why}",
    "yes": "yes",
    "no": "no",
    "home.title": "Home",
    "home.loading": "Loading…",
    "home.reader.none": "Reader: no card reader plugged in",
    "home.reader.some": "Reader: {names}",
    "home.card": "Card: {words}",
    "home.profile": "{name}: {ready} ready to sign · {signed} to send · "
    "{sent} sent without ARL · {done} acknowledged · {rejected} rejected",
    "home.no_profile": "No practitioner configured: call the technician.",
    "home.network": "Network {name}: {words}",
    "home.purge": "Mailbox polling: last {last} · next {next}",
    "home.never": "never",
    "home.unknown": "unknown",
    "home.alerts.none": "Alerts: none",
    "home.alerts.some": "Alerts: {n} to read (key A)",
    "home.alerts.trust": "Alerts: {n} to read (key A), {trust} about certificates or revocation "
    "lists",
    "home.backup.none": "Backup: no successful backup — call the technician",
    "home.backup.hours": "Backup: last successful {n} h ago",
    "home.backup.days": "Backup: last successful {n} days ago",
    "home.clock_unsync": "Clock not synchronized: signing waits for time synchronization (NTP).",
    "home.disk_full": "Disk full ({n} MiB free): nothing new is recorded, nothing is deleted "
    "from the mailbox; call your technician.",
    "home.protection_weak": "Weak protection: the data key is on the same medium as the data.",
    "home.hint": "Insert your CPS card then press S to sign.",
    "home.provisioning_open": "Provisioning window open (SSH administration from the practice "
    "network): closes in {n} min at the latest.",
    "sign.title": "Signing the lots",
    "sign.need_reader": "Plug in the card reader.",
    "sign.need_card": "Insert your CPS card in the reader.",
    "sign.reading": "Reading the card…",
    "sign.refused": "Signing impossible: {why}",
    "sign.clock": "Clock not synchronized: signing is blocked until the time is synchronized "
    "(NTP), because the signing date would be wrong.",
    "sign.who": "Card of {name} (RPPS {rpps})",
    "sign.for": "May sign for: {profiles}",
    "sign.cert": "Certificate: {words}",
    "sign.tries": "Tries left: {n}",
    "sign.final_try": "FINAL TRY: a wrong PIN will lock the card.",
    "sign.choose_profile": "Sign for which practitioner?",
    "sign.pin.title": "Card PIN",
    "sign.pin.help": "Type your PIN then Enter (digits hidden). Escape: give up.",
    "sign.pin.keypad": "Type your PIN on the reader's keypad when signing starts.",
    "sign.pin.format": "The PIN has 4 to 8 digits.",
    "sign.no_lots": "No lot ready to sign for {name}.",
    "sign.lots.title": "Lots to sign for {name}",
    "sign.lots.help": "Space: tick or untick · Enter: continue · Escape: give up.",
    "sign.lot_line": "Lot {number} of {date} — {invoices} invoice(s), {total} → {organism}",
    "sign.confirm": "Sign {n} lot(s) for {name} with the card of {holder}?",
    "sign.confirm.help": "Enter: sign · Escape: give up.",
    "sign.signing": "Signing: {done}/{total} lot(s)",
    "sign.sending": "Sending to the mailbox of {name}…",
    "sign.summary": "Summary",
    "sign.signed": "{n} lot(s) signed.",
    "sign.not_signed": "{n} lot(s) not signed: they stay ready.",
    "sign.stopped": "Stopped: {why}",
    "sign.sent": "{n} lot(s) sent.",
    "sign.waiting": "{n} lot(s) waiting for the network: they will leave automatically ({why}).",
    "sign.remove_card": "Remove your card.",
    "sign.card_removed": "Card removed: signing abandoned.",
    "sign.reader_gone": "Reader unplugged: signing abandoned.",
    "sign.aborted": "Signing abandoned: nothing was signed.",
    "sign.enter_done": "Enter: back to the home screen.",
    "lots.title": "Lots",
    "lots.empty": "No lot.",
    "lots.col.id": "No.",
    "lots.col.state": "State",
    "lots.col.profile": "Practitioner",
    "lots.col.lot": "Lot",
    "lots.col.date": "Date",
    "lots.col.invoices": "Invoices",
    "lots.col.total": "Amount",
    "lots.col.organism": "Organism",
    "lots.quarantine": "Refused files (not sent): {n}",
    "lots.refused": "{name} received {date}: {reasons}",
    "lots.count": "{total} lot(s) · rows {first} to {last} · Home / End: first / last",
    "list.window": "rows {first} to {last} of {total} · Home / End: first / last",
    "lot.title": "Lot no. {id}",
    "lot.line": "Lot {number} of {date} · {invoices} invoice(s) · {total} · {organism}",
    "lot.state": "State: {state}",
    "lot.signer": "Signed by: {signer}",
    "lot.history": "History",
    "lot.returns": "Returns",
    "lot.payments": "Payments",
    "state.ready": "ready to sign",
    "state.signed": "signed",
    "state.sending": "sending",
    "state.sent": "sent",
    "state.acknowledged": "acknowledged (positive ARL)",
    "state.rejected": "rejected (negative ARL)",
    "state.cancelled": "cancelled",
    "returns.title": "Returns",
    "returns.empty": "No return received.",
    "returns.col.date": "Received",
    "returns.col.kind": "Type",
    "returns.col.lot": "Lot",
    "returns.col.words": "Result",
    "payments.title": "Payments and rejects per invoice",
    "payments.empty": "No payment received.",
    "payments.col.invoice": "Invoice",
    "payments.col.amo": "AMO",
    "payments.col.amc": "AMC",
    "payments.col.reasons": "Reasons",
    "payment.state.P": "paid",
    "payment.state.R": "rejected",
    "payment.state.D": "deferred",
    "alerts.title": "Alerts",
    "alerts.empty": "No alert to read.",
    "alerts.col.id": "No.",
    "alerts.col.date": "Date",
    "alerts.col.words": "Alert",
    "alerts.acked": "Alert no. {id} acknowledged.",
    "alerts.cert": "Certificates",
    "tech.title": "Technician mode",
    "tech.passphrase": "Technician passphrase",
    "tech.passphrase.help": "Type the passphrase then Enter. Escape: back.",
    "tech.create": "No technician passphrase yet: choose one (at least 10 characters), "
    "then type it a second time.",
    "tech.create.again": "Type the same passphrase a second time.",
    "tech.create.mismatch": "The two entries differ: start again.",
    "tech.create.short": "At least 10 characters.",
    "tech.created": "Passphrase saved.",
    "tech.wrong": "Wrong passphrase ({n} failure(s)). Next try in {s} s.",
    "tech.wait": "Wait {s} s before the next try.",
    "tech.locked": "Too many failures: technician mode locked until {until}.",
    "tech.checking": "Checking…",
    "tech.intro": "P: parameters · D: checks · J: journal · L: lots · C: certificates · "
    "O: provisioning window",
    "tech.trust.none": "No organism nor authority configured.",
    "tech.params.profile": "Practitioner {profile}",
    "tech.params.none": "No practitioner configured.",
    "tech.hygiene.warn": "Warning: {words}",
    "tech.hygiene.refuse": "Refused: {words}",
    "tech.doctor.ok": "OK",
    "tech.doctor.warn": "WARNING",
    "tech.doctor.problem": "PROBLEM",
    "tech.journal.ok": "Journal intact: {count} entries.",
    "tech.journal.broken": "Journal broken: {words}",
    "tech.journal.head": "Head (to copy): {hash}",
    "tech.lots.help": "X: cancel the chosen lot · E: resend an overdue lot",
    "tech.confirm_cancel": "Cancel lot no. {id} for good?",
    "tech.confirm_resend": "Resend lot no. {id} (same bytes, same Message-ID)?",
    "tech.cancelled": "Lot no. {id} cancelled.",
    "tech.resent": "Lot no. {id} queued for sending again.",
    "tech.confirm.help": "Enter: confirm · Escape: do nothing.",
    "key.window": "Provisioning window (30 min)",
    "key.window_close": "Close the window",
    "tech.window.confirm": "Open the provisioning window for 30 minutes? Administration over SSH "
    "(the technician's key only) will be reachable from the practice network, then closed by "
    "itself.",
    "tech.window.opening": "Opening the provisioning window…",
    "tech.window.closing": "Closing the provisioning window…",
    "tech.window.open": "Provisioning window OPEN — {left} left",
    "tech.window.address": "Box address: {addresses} — SSH port {port}",
    "tech.window.fingerprint": "SSH key fingerprint: {fingerprint}",
    "tech.window.check": 'On your laptop, "ssh-keyscan -p {port} -t ed25519 {address} | '
    'ssh-keygen -lf -" must show the same fingerprint; otherwise go no further. '
    "Then run provision.yml: it closes the window at its end.",
    "tech.window.closed": "Provisioning window closed.",
    "tech.window.closed.deadline": "Provisioning window closed: its time is up.",
    "tech.window.no_answer": "The provisioning window service does not answer: try again, or "
    "restart the box.",
    "tech.window.error": "The provisioning window could not open: {why}.",
    "tech.window.why.no-interface": "no interface on the practice network",
    "tech.window.why.no-address": "no address on the practice network (cable? DHCP?)",
    "tech.window.why.other": "service error {code}, see the system journal",
    "tech.window.help": "O: open (or show) the window · F: close it now.",
    "tech.window.requested": "Opening requested.",
    "tech.window.close_requested": "Closing requested.",
}

CATALOGUES: dict[Lang, dict[str, str]] = {"fr": FR, "en": EN}
_current: list[Lang] = ["fr"]


def set_language(lang: Lang) -> None:
    _current[0] = lang


def language() -> Lang:
    return _current[0]


def t(key: str, **values: object) -> str:
    """The entry ``key`` in the current language, formatted with ``values``."""
    text = CATALOGUES[_current[0]][key]
    return text.format(**values) if values else text


def pick(fr: str, en: str | None) -> str:
    """Words given in both languages by the core (errors, verdicts)."""
    return en if _current[0] == "en" and en else fr


def euros(cents: int) -> str:
    if _current[0] == "en":
        return f"€{cents / 100:,.2f}"
    return f"{cents / 100:,.2f} €".replace(",", " ").replace(".", ",")


def number(n: int) -> str:
    """A count as people read it: 60 000 (French), 60,000 (English)."""
    text = f"{n:,}"
    return text if _current[0] == "en" else text.replace(",", " ")


def lot_date(aammjj: str) -> str:
    if len(aammjj) != 6:
        return aammjj
    if _current[0] == "en":
        return f"20{aammjj[0:2]}-{aammjj[2:4]}-{aammjj[4:6]}"
    return f"{aammjj[4:6]}/{aammjj[2:4]}/20{aammjj[0:2]}"
