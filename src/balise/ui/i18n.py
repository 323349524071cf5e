"""The kiosk's words: one catalogue, French first and complete, English complete too.

``t(key, **values)`` formats the entry of the current language; ``pick(fr, en)`` chooses between
words that come ready in both languages from the core (errors, verdicts). The words shared with
the ``balise`` command (lot and payment states, money, counts, dates) live in
``balise.domain.vocabulary``: the helpers at the end give them in the current language."""

from __future__ import annotations

from typing import TYPE_CHECKING

from balise.domain import vocabulary
from balise.domain.vocabulary import Lang

if TYPE_CHECKING:
    from datetime import datetime

FR: dict[str, str] = {
    # keys shown in the footer
    "key.sign": "Signer",
    "key.lots": "Lots",
    "key.returns": "Retours",
    "key.alerts": "Alertes",
    "key.technician": "Technicien",
    "key.back": "Retour",
    "key.close_channel": "Fermer le canal",
    "key.channel": "Services en ligne (carte)",
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
    "home.preparing": "Préparation de la base de données après une mise à jour : quelques minutes,"
    " n'éteignez pas le boîtier.",
    "home.reader.none": "Lecteur : aucun lecteur de carte branché",
    "home.reader.some": "Lecteur : {names}",
    "home.card": "Carte : {words}",
    "home.profile": "{name} : {ready} prêt(s) à signer · {signed} à envoyer · "
    "{sent} envoyé(s) sans ARL · {done} accusé(s) · {rejected} rejeté(s)",
    "home.no_profile": "Aucun praticien configuré : I pour la mise en service avec votre carte "
    "CPS (ou appelez le technicien).",
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
    "home.version": "Version {version} · {update}",
    "home.update.none": "aucune mise à jour pour l'instant",
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
    "sign.channel_closed": "Le canal des services en ligne est fermé pour signer (E le rouvre).",
    "sign.refused": "Signature impossible : {why}",
    "sign.clock": "Horloge non synchronisée : la signature est bloquée jusqu'à la "
    "synchronisation de l'heure (NTP), car la date de signature serait fausse.",
    "sign.update": "Mise à jour en cours : la télétransmission reprendra après le redémarrage "
    "de la box.",
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
    # parameters edited on the kiosk (technician mode)
    "key.edit": "Modifier",
    "tech.params.edit": "M : modifier un paramètre (mêmes règles que balise params set).",
    "edit.title": "Modifier les paramètres",
    "edit.scopes": "Que voulez-vous modifier ?",
    "edit.scopes.help": "Flèches puis Entrée · Échap : retour.",
    "edit.fields.help": "Entrée : modifier le paramètre choisi · Échap : retour aux choix.",
    "edit.scope.global": "Paramètres du boîtier",
    "edit.scope.profile": "Praticien {id}",
    "edit.scope.organism": "Organisme {id}",
    "edit.scope.new_profile": "Nouveau praticien…",
    "edit.scope.new_organism": "Nouvel organisme…",
    "edit.new.profile": "Identifiant du nouveau praticien",
    "edit.new.organism": "Identifiant du nouvel organisme",
    "edit.new.help": "Minuscules, chiffres, - et _ (32 au plus), par exemple p2. Entrée : "
    "continuer · Échap : annuler.",
    "edit.current": "Valeur actuelle : {shown}",
    "edit.help": "Tapez la nouvelle valeur puis Entrée · Échap : ne rien changer.",
    "edit.help.secret": "Secret : tapez-le puis Entrée ; il ne sera jamais réaffiché. "
    "Échap : ne rien changer.",
    "edit.help.certificates": "Chemin du fichier PEM (clé USB), par exemple "
    "/media/usb/certificat.pem, puis Entrée · Échap : ne rien changer.",
    "edit.saving": "Enregistrement…",
    "edit.refused": "Refusé, rien n'est enregistré : {why}",
    "edit.saved": "{name} : enregistré.",
    # first-start wizard
    "key.setup": "Mise en service",
    "key.my_profile": "Mon profil (carte)",
    "setup.title": "Mise en service du boîtier",
    "setup.step.card": "1. Votre carte CPS",
    "setup.step.mail": "2. Votre boîte aux lettres (BAL)",
    "setup.step.test": "3. Test de connexion",
    "setup.step.emitter": "4. Numéro d'émetteur",
    "setup.step.organisms": "5. Organismes destinataires",
    "setup.step.summary": "6. Récapitulatif",
    "setup.step.done": "Mise en service terminée",
    "setup.card.insert": "Insérez votre carte CPS dans le lecteur. (Échap : accueil, où T mène "
    "au mode technicien et I rouvre cet assistant.)",
    "setup.card.reading": "Lecture de la carte…",
    "setup.card.unreadable": "La carte ne se lit pas : {why}",
    "setup.card.who": "Carte de {name} (RPPS {rpps})",
    "setup.card.go": "Entrée : taper votre code PIN (la carte prouvera qu'elle est à vous).",
    "setup.card.refused": "Cette carte ne peut pas servir : {why} Retirez-la.",
    "setup.card.proving": "La carte prouve qui la détient…",
    "setup.card.pulled": "Carte retirée : rien n'a été enregistré et la saisie est effacée. "
    "Insérez votre carte pour recommencer.",
    "setup.mail": "Tapez chaque réglage puis Entrée (Tab : champ suivant). Identifiant des "
    "serveurs : l'adresse de la BAL. Échap : revenir.",
    "setup.f.bal_address": "Adresse de la BAL",
    "setup.f.bal_password": "Mot de passe de la BAL (jamais réaffiché)",
    "setup.f.smtp_host": "Serveur SMTP (envoi)",
    "setup.f.smtp_port": "Port SMTP",
    "setup.f.smtp_tls": "TLS SMTP (implicit ou starttls)",
    "setup.f.pop3_host": "Serveur POP3 (relève)",
    "setup.f.pop3_port": "Port POP3",
    "setup.f.pop3_tls": "TLS POP3 (implicit ou stls)",
    "setup.f.emitter": "Numéro d'émetteur (14 chiffres)",
    "setup.f.org_ident": "Identifiant de l'organisme (par exemple cpam422)",
    "setup.f.org_type": "Type (CP, MA, OC ou OT)",
    "setup.f.org_regime": "Régime (2 chiffres)",
    "setup.f.org_caisse": "Caisse (3 chiffres)",
    "setup.f.org_centre": "Centre (3 chiffres)",
    "setup.f.org_address": "Adresse de l'organisme",
    "setup.f.org_pem": "Certificats de chiffrement : chemin du fichier PEM sur la clé USB "
    "(vide quand l'annuaire SESAM-Vitale est configuré : le boîtier les y cherche)",
    "setup.test.running": "Test de connexion aux serveurs (rien n'est envoyé)…",
    "setup.test.ok": "Connexion réussie. Entrée : continuer.",
    "setup.test.failed": "Échap : corriger les réglages.",
    "setup.emitter": "Le numéro d'émetteur de facturation (14 chiffres), puis Entrée.",
    "setup.organisms.reading": "Lecture des organismes…",
    "setup.organisms.known": "Organismes déjà configurés : {ids}. Entrée : continuer.",
    "setup.organisms.usb": "Aucun organisme configuré : tapez celui de votre caisse ; ses "
    "certificats viennent d'un fichier PEM sur une clé USB.",
    "setup.sum.who": "Praticien : {name} (RPPS {rpps}), titulaire de la carte",
    "setup.sum.bal": "BAL : {bal}",
    "setup.sum.smtp": "SMTP : {host}:{port} ({tls})",
    "setup.sum.pop3": "POP3 : {host}:{port} ({tls})",
    "setup.sum.emitter": "Numéro d'émetteur : {emitter}",
    "setup.sum.organisms": "Organismes : {ids}",
    "setup.sum.go": "Entrée : enregistrer · Échap : revenir.",
    "setup.saving": "Enregistrement (nouveau test de connexion d'abord)…",
    "setup.save.failed": "Rien n'est enregistré : {why}",
    "setup.done": "Réglages enregistrés et journalisés.",
    "setup.done.passphrase": "Phrase de passe de secours des sauvegardes — notez-la sur papier "
    "maintenant, elle ne sera plus jamais affichée :",
    "setup.done.paper": "Gardez ce papier hors du cabinet : sans lui, une sauvegarde ne se "
    "restaure pas.",
    "setup.done.go": "Entrée : terminer.",
    # self-service with the card
    "key.bal_password": "Mot de passe BAL",
    "key.add_locum": "Ajouter un remplaçant",
    "key.remove_locum": "Retirer un remplaçant",
    "profile.title": "Mon profil (avec ma carte)",
    "profile.reading": "Lecture de la carte…",
    "profile.mine": "Vos réglages (profil {profile}) :",
    "profile.locums": "Remplaçants autorisés à signer pour vous :",
    "profile.no_locum": "  aucun",
    "profile.help": "M : nouveau mot de passe de la BAL (testé avant d'être enregistré) · "
    "A : ajouter un remplaçant (fichier PEM de son certificat sur une clé USB) · "
    "R : retirer un remplaçant · Échap : retour.",
    "profile.password.ask": "Nouveau mot de passe de la BAL (celui que l'hébergeur impose)",
    "profile.testing": "Test du nouveau mot de passe sur les serveurs…",
    "profile.password.saved": "Nouveau mot de passe enregistré : {words}",
    "profile.password.refused": "Mot de passe NON enregistré : {words}",
    "profile.locum.ask": "Chemin du certificat du remplaçant (fichier PEM sur la clé USB)",
    "profile.locum.remove": "Quel remplaçant retirer ?",
    "profile.locum.added": "Remplaçant ajouté.",
    "profile.locum.removed": "Remplaçant retiré.",
    # the card-authenticated channel to online services (issue 20)
    "channel.title": "Canal de la carte (services en ligne)",
    "channel.open": "Canal ouvert pour {who} depuis {since} : {requests} requête(s) relayée(s).",
    "channel.closed": "Canal fermé ({why}).",
    "channel.why.card_pulled": "carte retirée",
    "channel.why.idle": "inactivité",
    "channel.why.practitioner": "fermé par le praticien",
    "channel.why.stopped": "relais arrêté",
    "channel.never": "Aucun canal ouvert.",
    "channel.opening": "Ouverture du canal : connexion de la carte…",
    "channel.refused": "Le canal n'a pas pu être ouvert : {why}",
    "channel.card_refused": "Canal impossible avec cette carte : {why}",
    "channel.help": "F : fermer le canal (la carte se déconnecte) · Échap : retour.",
    # the alert screen of a stopped boot (balise kiosk --alerte)
    "bootalert.secours.title": "Démarrage avec la clé de secours",
    "bootalert.secours.what": "Ce boîtier a démarré avec la clé de secours du technicien : la "
    "puce TPM n'a pas reconnu le système (le système, sa ligne de commande ou le micrologiciel "
    "a changé). Les données sont là, mais les paramètres restent fermés : Balise ne signe et "
    "n'envoie rien.",
    "bootalert.secours.todo": "Appelez votre technicien : il remet le boîtier en état "
    "(réinstallation puis restauration de la dernière sauvegarde, ou nouvel enrôlement de la "
    "puce TPM sur un système qu'il a vérifié).",
    "bootalert.refus.title": "Démarrage refusé par la puce TPM",
    "bootalert.refus.what": "La puce TPM n'a pas reconnu ce démarrage (le système, sa ligne de "
    "commande ou le micrologiciel a changé) : la partition de données reste fermée, rien n'est "
    "effacé.",
    "bootalert.refus.todo": "Appelez votre technicien : il remet le boîtier en état "
    "(réinstallation puis restauration de la dernière sauvegarde).",
    "bootalert.echec.title": "Démarrage arrêté",
    "bootalert.echec.what": "Le démarrage de Balise n'a pas abouti : la borne et l'envoi des "
    "lots ne démarrent pas. Rien n'est effacé.",
    "bootalert.echec.todo": "Appelez votre technicien.",
    "bootalert.root_modified": "Le système de ce boîtier a été modifié (un bloc refusé par "
    "dm-verity) : il doit être réinstallé (re-flashé) puis restauré depuis la dernière "
    "sauvegarde.",
    "bootalert.reason": "Raison : {why}",
    "bootalert.keys": "Aucune touche n'est nécessaire : ce message reste affiché jusqu'à l'arrêt "
    "du boîtier.",
}

EN: dict[str, str] = {
    "key.sign": "Sign",
    "key.lots": "Lots",
    "key.returns": "Returns",
    "key.alerts": "Alerts",
    "key.technician": "Technician",
    "key.back": "Back",
    "key.close_channel": "Close the channel",
    "key.channel": "Online services (card)",
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
    "home.preparing": "Preparing the database after an update: a few minutes, do not switch the"
    " box off.",
    "home.reader.none": "Reader: no card reader plugged in",
    "home.reader.some": "Reader: {names}",
    "home.card": "Card: {words}",
    "home.profile": "{name}: {ready} ready to sign · {signed} to send · "
    "{sent} sent without ARL · {done} acknowledged · {rejected} rejected",
    "home.no_profile": "No practitioner configured: I to set up the box with your CPS card (or "
    "call the technician).",
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
    "home.version": "Version {version} · {update}",
    "home.update.none": "no update yet",
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
    "sign.channel_closed": "The online services channel is closed to sign (E opens it again).",
    "sign.refused": "Signing impossible: {why}",
    "sign.clock": "Clock not synchronized: signing is blocked until the time is synchronized "
    "(NTP), because the signing date would be wrong.",
    "sign.update": "Update in progress: teletransmission will resume after the box restarts.",
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
    # parameters edited on the kiosk (technician mode)
    "key.edit": "Edit",
    "tech.params.edit": "M: edit a parameter (same rules as balise params set).",
    "edit.title": "Edit parameters",
    "edit.scopes": "What do you want to change?",
    "edit.scopes.help": "Arrows then Enter · Escape: back.",
    "edit.fields.help": "Enter: edit the chosen parameter · Escape: back to the choices.",
    "edit.scope.global": "Box parameters",
    "edit.scope.profile": "Practitioner {id}",
    "edit.scope.organism": "Organism {id}",
    "edit.scope.new_profile": "New practitioner…",
    "edit.scope.new_organism": "New organism…",
    "edit.new.profile": "Identifier of the new practitioner",
    "edit.new.organism": "Identifier of the new organism",
    "edit.new.help": "Lowercase, digits, - and _ (at most 32), e.g. p2. Enter: continue · "
    "Escape: cancel.",
    "edit.current": "Current value: {shown}",
    "edit.help": "Type the new value then Enter · Escape: change nothing.",
    "edit.help.secret": "Secret: type it then Enter; it is never shown back. Escape: change "
    "nothing.",
    "edit.help.certificates": "Path of the PEM file (USB key), e.g. /media/usb/certificate.pem, "
    "then Enter · Escape: change nothing.",
    "edit.saving": "Saving…",
    "edit.refused": "Refused, nothing saved: {why}",
    "edit.saved": "{name}: saved.",
    # first-start wizard
    "key.setup": "Setup",
    "key.my_profile": "My profile (card)",
    "setup.title": "Setting up the box",
    "setup.step.card": "1. Your CPS card",
    "setup.step.mail": "2. Your mailbox (BAL)",
    "setup.step.test": "3. Connection test",
    "setup.step.emitter": "4. Emitter number",
    "setup.step.organisms": "5. Organisms",
    "setup.step.summary": "6. Summary",
    "setup.step.done": "Setup complete",
    "setup.card.insert": "Insert your CPS card in the reader. (Escape: Accueil, where T leads to "
    "technician mode and I opens this wizard again.)",
    "setup.card.reading": "Reading the card…",
    "setup.card.unreadable": "The card cannot be read: {why}",
    "setup.card.who": "Card of {name} (RPPS {rpps})",
    "setup.card.go": "Enter: type your PIN (the card will prove it is yours).",
    "setup.card.refused": "This card cannot be used: {why} Remove it.",
    "setup.card.proving": "The card proves who holds it…",
    "setup.card.pulled": "Card removed: nothing was saved and what was typed is erased. Insert "
    "your card to start again.",
    "setup.mail": "Type each setting then Enter (Tab: next field). The servers' user name: the "
    "mailbox address. Escape: back.",
    "setup.f.bal_address": "Mailbox address",
    "setup.f.bal_password": "Mailbox password (never shown back)",
    "setup.f.smtp_host": "SMTP server (sending)",
    "setup.f.smtp_port": "SMTP port",
    "setup.f.smtp_tls": "SMTP TLS (implicit or starttls)",
    "setup.f.pop3_host": "POP3 server (fetching)",
    "setup.f.pop3_port": "POP3 port",
    "setup.f.pop3_tls": "POP3 TLS (implicit or stls)",
    "setup.f.emitter": "Emitter number (14 digits)",
    "setup.f.org_ident": "Organism identifier (e.g. cpam422)",
    "setup.f.org_type": "Type (CP, MA, OC or OT)",
    "setup.f.org_regime": "Régime (2 digits)",
    "setup.f.org_caisse": "Caisse (3 digits)",
    "setup.f.org_centre": "Centre (3 digits)",
    "setup.f.org_address": "Organism address",
    "setup.f.org_pem": "Encryption certificates: path of the PEM file on the USB key (empty "
    "when the SESAM-Vitale directory is configured: the box fetches them there)",
    "setup.test.running": "Testing the servers (nothing is sent)…",
    "setup.test.ok": "Connection works. Enter: continue.",
    "setup.test.failed": "Escape: correct the settings.",
    "setup.emitter": "The billing emitter number (14 digits), then Enter.",
    "setup.organisms.reading": "Reading the organisms…",
    "setup.organisms.known": "Organisms already configured: {ids}. Enter: continue.",
    "setup.organisms.usb": "No organism configured: type your fund's; its certificates come from "
    "a PEM file on a USB key.",
    "setup.sum.who": "Practitioner: {name} (RPPS {rpps}), the card's holder",
    "setup.sum.bal": "Mailbox: {bal}",
    "setup.sum.smtp": "SMTP: {host}:{port} ({tls})",
    "setup.sum.pop3": "POP3: {host}:{port} ({tls})",
    "setup.sum.emitter": "Emitter number: {emitter}",
    "setup.sum.organisms": "Organisms: {ids}",
    "setup.sum.go": "Enter: save · Escape: back.",
    "setup.saving": "Saving (connection tested again first)…",
    "setup.save.failed": "Nothing saved: {why}",
    "setup.done": "Settings saved and journaled.",
    "setup.done.passphrase": "Backup recovery passphrase — write it on paper now, it will never "
    "be shown again:",
    "setup.done.paper": "Keep this paper outside the practice: without it a backup cannot be "
    "restored.",
    "setup.done.go": "Enter: finish.",
    # self-service with the card
    "key.bal_password": "Mailbox password",
    "key.add_locum": "Add a locum",
    "key.remove_locum": "Remove a locum",
    "profile.title": "My profile (with my card)",
    "profile.reading": "Reading the card…",
    "profile.mine": "Your settings (profile {profile}):",
    "profile.locums": "Locums allowed to sign for you:",
    "profile.no_locum": "  none",
    "profile.help": "M: new mailbox password (tested before it is saved) · A: add a locum (PEM "
    "file of their certificate on a USB key) · R: remove a locum · Escape: back.",
    "profile.password.ask": "New mailbox password (the one the mail host requires)",
    "profile.testing": "Testing the new password on the servers…",
    "profile.password.saved": "New password saved: {words}",
    "profile.password.refused": "Password NOT saved: {words}",
    "profile.locum.ask": "Path of the locum's certificate (PEM file on the USB key)",
    "profile.locum.remove": "Which locum to remove?",
    "profile.locum.added": "Locum added.",
    "profile.locum.removed": "Locum removed.",
    # the card-authenticated channel to online services (issue 20)
    "channel.title": "Card channel (online services)",
    "channel.open": "Channel open for {who} since {since}: {requests} request(s) relayed.",
    "channel.closed": "Channel closed ({why}).",
    "channel.why.card_pulled": "card pulled",
    "channel.why.idle": "idle",
    "channel.why.practitioner": "closed by the practitioner",
    "channel.why.stopped": "relay stopped",
    "channel.never": "No channel open.",
    "channel.opening": "Opening the channel: the card logs in…",
    "channel.refused": "The channel could not be opened: {why}",
    "channel.card_refused": "No channel with this card: {why}",
    "channel.help": "F: close the channel (the card logs out) · Escape: back.",
    "bootalert.secours.title": "Started with the recovery key",
    "bootalert.secours.what": "This box started with the technician's recovery key: the TPM "
    "did not recognise the system (the system, its command line or the firmware changed). The "
    "data is there, but the parameters stay closed: Balise signs and sends nothing.",
    "bootalert.secours.todo": "Call your technician: they restore the box (re-flash then "
    "restore the last backup, or enrol the TPM again on a system they checked).",
    "bootalert.refus.title": "Boot refused by the TPM",
    "bootalert.refus.what": "The TPM did not recognise this boot (the system, its command line "
    "or the firmware changed): the data partition stays closed, nothing is erased.",
    "bootalert.refus.todo": "Call your technician: they restore the box (re-flash then restore "
    "the last backup).",
    "bootalert.echec.title": "Boot stopped",
    "bootalert.echec.what": "Balise did not finish starting: the kiosk and the sending of lots "
    "do not start. Nothing is erased.",
    "bootalert.echec.todo": "Call your technician.",
    "bootalert.root_modified": "This box's system was modified (a block refused by dm-verity): "
    "it must be re-flashed, then restored from the last backup.",
    "bootalert.reason": "Reason: {why}",
    "bootalert.keys": "No key is needed: this message stays until the box is switched off.",
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
    return vocabulary.pick(fr, en, _current[0])


def euros(cents: int) -> str:
    """An amount in the current language (balise.domain.vocabulary)."""
    return vocabulary.euros(cents, _current[0])


def number(n: int) -> str:
    """A count in the current language (balise.domain.vocabulary)."""
    return vocabulary.number(n, _current[0])


def lot_date(aammjj: str) -> str:
    """A lot's date (AAMMJJ) in the current language (balise.domain.vocabulary)."""
    return vocabulary.lot_date(aammjj, _current[0])


def lot_state(state: str) -> str:
    """A lot state's words in the current language (balise.domain.vocabulary)."""
    return vocabulary.lot_state(state, _current[0])


def payment_state(code: str | None) -> str:
    """A payment state's words in the current language (balise.domain.vocabulary)."""
    return vocabulary.payment_state(code, _current[0])


def moment(value: datetime) -> str:
    """A day and an hour in the current language (balise.domain.vocabulary)."""
    return vocabulary.moment(value, _current[0])


def stamp(iso: str, *, hour: bool = True) -> str:
    """A stored ISO 8601 time in the current language (balise.domain.vocabulary)."""
    return vocabulary.stamp(iso, _current[0], hour=hour)
