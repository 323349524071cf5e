"""Every error code Balise gives, one enum per area: the one place a code is spelled.

A code is a public contract: the CLI's JSON error object (``{"error": {"code", "fr", "en"}}``),
the system journal's ``BALISE_CODE`` field, the box's own journal, quarantine records, the
exchange folder's receipts (docs/exchange.md) and the tests all read it. So a value never
changes; a member's name is its value, so that a search for ``LOT_UNKNOWN`` finds the member
and every place that raises it. The enums are ``StrEnum``: a member *is* its string (it compares
equal to it, prints, formats and serialises as it), so a code read back from JSON or the journal
compares equal to the member.

Codes that classify a file or a message rather than a failure of the box live beside what they
classify: ``domain.lotfile.LotFault`` (a lot file refused), ``domain.returns.ReturnProblem`` (a
return that cannot be used), ``domain.classify.UnknownReason`` (a message set aside) and
``cms.errors.CmsErrorCode`` (a CMS structure). The words of an error live with the exception
that carries the code (``domain.errors`` and each area's module), never repeated at each raise.
"""

# Names like PARAM_SECRET_ARGV are codes, not secrets (S105 reads them as passwords).
# ruff: noqa: S105

from __future__ import annotations

from enum import StrEnum


class GeneralCode(StrEnum):
    """Codes of the error tree's roots and of what no area owns."""

    BALISE = "BALISE"  # BaliseError with no more precise code
    CONFIG = "CONFIG"  # a parameter, the KEK or the data dir is missing or wrong
    INVALID = "INVALID"  # a value does not have the expected form
    INTEGRITY = "INTEGRITY"  # stored data failed an integrity check
    STATE = "STATE"  # an action not allowed in the current state
    INTERNAL = "INTERNAL"  # a bug: only the exception's type is said, never its message
    OS_ERROR = "OS_ERROR"  # an operating system error the CLI says in words
    INTERRUPTED = "INTERRUPTED"  # Ctrl-C at the terminal
    USAGE = "USAGE"  # argparse refused the command line
    DISK_FULL = "DISK_FULL"  # no room left where the box had to write
    DATA_DIR = "DATA_DIR"  # the data directory is missing or not usable
    DEMO = "DEMO"  # the demo cannot run here


class StoreCode(StrEnum):
    """The box's database, its vault, its key (KEK) and its journal."""

    DB_PRAGMAS = "DB_PRAGMAS"  # the database refuses the durability settings
    DB_LOCKED = "DB_LOCKED"  # another process holds the write lock past the busy timeout
    DB_IO = "DB_IO"  # the disk under the database failed (I/O error)
    DB_READONLY = "DB_READONLY"  # the database or its folder cannot be written
    DB_CORRUPT = "DB_CORRUPT"  # the file is damaged or not a database
    DB_UNAVAILABLE = "DB_UNAVAILABLE"  # the database file cannot be opened
    BLOB_CORRUPT = "BLOB_CORRUPT"  # a stored message no longer matches its hash
    VAULT_CORRUPT = "VAULT_CORRUPT"  # a secret of the vault fails its tag
    KEK_MISSING = "KEK_MISSING"
    KEK_PERMISSIONS = "KEK_PERMISSIONS"
    KEK_UNREADABLE = "KEK_UNREADABLE"
    KEK_INVALID = "KEK_INVALID"
    KEK_MISMATCH = "KEK_MISMATCH"  # the vault was sealed under another key
    JOURNAL_SECRET = "JOURNAL_SECRET"  # a secret was about to be written to the journal


class LotCode(StrEnum):
    """A lot once taken: its states, its mail and sending it."""

    LOT_UNKNOWN = "LOT_UNKNOWN"
    LOT_TRANSITION = "LOT_TRANSITION"  # a state change the lot's life does not allow
    LOT_STATE_CHANGED = "LOT_STATE_CHANGED"  # another process changed it meanwhile
    LOT_NOT_SIGNED = "LOT_NOT_SIGNED"
    LOT_NO_MAIL = "LOT_NO_MAIL"
    LOT_NOT_SENT = "LOT_NOT_SENT"
    LOT_NOT_OVERDUE = "LOT_NOT_OVERDUE"
    LOT_MAIL = "LOT_MAIL"  # a lot mail's field (address, compostage, host) is malformed
    NO_ENVELOPE = "NO_ENVELOPE"
    PROFILE_CHOICE = "PROFILE_CHOICE"  # which practitioner profile: more than one fits
    SEND_LOCKED = "SEND_LOCKED"  # another process is sending this profile's lots


class DepotCode(StrEnum):
    """Files dropped in the exchange folder and imported from a USB key."""

    DEPOT_UNREADABLE = "DEPOT_UNREADABLE"
    DEPOT_SYMLINK = "DEPOT_SYMLINK"
    DEPOT_NOT_A_FILE = "DEPOT_NOT_A_FILE"
    DEPOT_UNPARSABLE = "DEPOT_UNPARSABLE"
    EXCHANGE_PATH = "EXCHANGE_PATH"
    IMPORT_UNREADABLE = "IMPORT_UNREADABLE"


class MailCode(StrEnum):
    """Mail transport, both ways: SMTP (sending lots) and POP3 (fetching returns)."""

    SMTP = "SMTP"
    SMTP_NETWORK = "SMTP_NETWORK"  # unreachable, or the session broke: waiting for the network
    SMTP_AUTH = "SMTP_AUTH"
    SMTP_CERT = "SMTP_CERT"
    SMTP_TLS_VERSION = "SMTP_TLS_VERSION"
    SMTP_NO_STARTTLS = "SMTP_NO_STARTTLS"
    SMTP_REFUSED = "SMTP_REFUSED"  # one message refused, the session went on
    POP3 = "POP3"
    POP3_UNREACHABLE = "POP3_UNREACHABLE"  # waiting for the network
    POP3_TLS = "POP3_TLS"
    POP3_CERT = "POP3_CERT"
    POP3_NO_STLS = "POP3_NO_STLS"
    POP3_AUTH = "POP3_AUTH"
    POP3_PROTOCOL = "POP3_PROTOCOL"
    POP3_CONFIG = "POP3_CONFIG"
    MAIL_TEST_FAILED = "MAIL_TEST_FAILED"
    MAIL_TEST_INCOMPLETE = "MAIL_TEST_INCOMPLETE"


class ReturnsCode(StrEnum):
    """Fetching, analysing and keeping returns (the purge)."""

    PURGE_LOCKED = "PURGE_LOCKED"  # another process is purging this mailbox
    RETURN_UNSIGNED = "RETURN_UNSIGNED"
    RETURN_BAD_SIGNATURE = "RETURN_BAD_SIGNATURE"
    ANALYSIS_FAILED = "ANALYSIS_FAILED"
    ANALYSIS_CRASHED = "ANALYSIS_CRASHED"
    ANALYSIS_TIMEOUT = "ANALYSIS_TIMEOUT"
    ANALYSIS_MEMORY = "ANALYSIS_MEMORY"


class ParamCode(StrEnum):
    """Parameters: their names, scopes, types and values."""

    PARAM_INVALID = "PARAM_INVALID"
    PARAM_MISSING = "PARAM_MISSING"
    PARAM_SCOPE = "PARAM_SCOPE"
    PARAM_SECRET_ARGV = "PARAM_SECRET_ARGV"  # a secret given on the command line
    PARAM_TYPE = "PARAM_TYPE"  # a stored value of a type the box cannot use
    PARAM_UNKNOWN = "PARAM_UNKNOWN"
    PARAM_FILE = "PARAM_FILE"
    RETENTION_DAYS = "RETENTION_DAYS"


class HygieneCode(StrEnum):
    """What the mailbox hygiene rules find in the profiles (refusals and warnings)."""

    HYG_SHARED_BAL = "HYG_SHARED_BAL"
    HYG_WEBMAIL = "HYG_WEBMAIL"
    HYG_NOMINATIVE = "HYG_NOMINATIVE"
    HYG_TWO_BALS_RPPS = "HYG_TWO_BALS_RPPS"
    HYG_TWO_BALS_EMITTER = "HYG_TWO_BALS_EMITTER"


class BackupCode(StrEnum):
    """Backups, restore and extract."""

    BACKUP_FAILED = "BACKUP_FAILED"
    BACKUP_IO = "BACKUP_IO"
    BACKUP_BUSY = "BACKUP_BUSY"
    BACKUP_DAMAGED = "BACKUP_DAMAGED"
    BACKUP_HEADER = "BACKUP_HEADER"
    BACKUP_UNREADABLE = "BACKUP_UNREADABLE"
    BACKUP_NO_PASSPHRASE = "BACKUP_NO_PASSPHRASE"
    BACKUP_PASSPHRASE_INVALID = "BACKUP_PASSPHRASE_INVALID"
    BACKUP_WRONG_PASSPHRASE = "BACKUP_WRONG_PASSPHRASE"
    RESTORE_NOT_EMPTY = "RESTORE_NOT_EMPTY"
    RESTORE_CHAIN = "RESTORE_CHAIN"
    RESTORE_VAULT = "RESTORE_VAULT"
    EXTRACT_TARGET = "EXTRACT_TARGET"
    EXTRACT_NOT_EMPTY = "EXTRACT_NOT_EMPTY"


class CardCode(StrEnum):
    """The practitioner's card, its PIN, its reader and what signing checks."""

    CARD = "CARD"
    CARD_FAILURE = "CARD_FAILURE"
    CARD_REMOVED = "CARD_REMOVED"
    CARD_NOT_SUPPORTED = "CARD_NOT_SUPPORTED"
    CARD_SEVERAL = "CARD_SEVERAL"
    CARD_SESSION_CLOSED = "CARD_SESSION_CLOSED"
    CARD_REFUSED = "CARD_REFUSED"
    CARD_NOT_PROVEN = "CARD_NOT_PROVEN"
    CARD_CERT_DATES = "CARD_CERT_DATES"
    NOT_TITULAR = "NOT_TITULAR"
    PIN_WRONG = "PIN_WRONG"
    PIN_LOCKED = "PIN_LOCKED"
    PIN_EMPTY = "PIN_EMPTY"
    PIN_FORMAT = "PIN_FORMAT"
    PIN_ON_READER = "PIN_ON_READER"
    PIN_CANCELLED = "PIN_CANCELLED"
    PKCS11_MODULE_MISSING = "PKCS11_MODULE_MISSING"
    PCSC_UNAVAILABLE = "PCSC_UNAVAILABLE"
    SIGN_NOT_CONSENTED = "SIGN_NOT_CONSENTED"
    SIGNER_NOT_ALLOWED = "SIGNER_NOT_ALLOWED"
    CLOCK_UNSYNC = "CLOCK_UNSYNC"
    RECIPIENT_CERT_EXPIRED = "RECIPIENT_CERT_EXPIRED"
    RECIPIENT_CERT_MISSING = "RECIPIENT_CERT_MISSING"


class TrustCode(StrEnum):
    """Certificates, revocation lists and the organisms' directory."""

    CERT_REFUSED = "CERT_REFUSED"
    # The signature certificate's check (adapters.certcheck.CheckCode, upper-cased).
    CERT_EXPIRED = "CERT_EXPIRED"
    CERT_NOT_YET_VALID = "CERT_NOT_YET_VALID"
    CERT_UNKNOWN_ISSUER = "CERT_UNKNOWN_ISSUER"
    CERT_REVOKED = "CERT_REVOKED"
    CERT_BAD_USAGE = "CERT_BAD_USAGE"
    CERT_BAD_CRL = "CERT_BAD_CRL"
    CERT_INVALID = "CERT_INVALID"
    CRL_FETCH = "CRL_FETCH"
    CRL_NO_AUTHORITY = "CRL_NO_AUTHORITY"
    CRL_NO_SOURCE = "CRL_NO_SOURCE"
    CRL_UNREADABLE = "CRL_UNREADABLE"
    CRL_UNTRUSTED = "CRL_UNTRUSTED"
    CRL_DATES = "CRL_DATES"
    CRL_OLDER = "CRL_OLDER"
    FETCH_FAILED = "FETCH_FAILED"
    DIRECTORY_FETCH = "DIRECTORY_FETCH"
    DIRECTORY_NOT_CONFIGURED = "DIRECTORY_NOT_CONFIGURED"
    DIRECTORY_NO_ROOTS = "DIRECTORY_NO_ROOTS"
    DIRECTORY_UNREACHABLE = "DIRECTORY_UNREACHABLE"
    ORGANISM_UNKNOWN = "ORGANISM_UNKNOWN"


class SetupCode(StrEnum):
    """Setting the box up: the wizard, the technician, provisioning."""

    SETUP_DONE = "SETUP_DONE"
    TECH_REQUIRED = "TECH_REQUIRED"
    TECH_PASSPHRASE_SET = "TECH_PASSPHRASE_SET"
    PROVISION_REQUEST = "PROVISION_REQUEST"
    PROVISION_UNAVAILABLE = "PROVISION_UNAVAILABLE"


class AgentEvent(StrEnum):
    """What the background agent did, routine or not (the ``BALISE_CODE`` of its log records
    that are not a failure's code): a technician filters the system journal on them."""

    AGENT_STARTED = "AGENT_STARTED"
    AGENT_STOPPED = "AGENT_STOPPED"
    AGENT_STEPS_FAILED = "AGENT_STEPS_FAILED"  # `balise agent --once` ended with failed steps
    STEP_RECOVERED = "STEP_RECOVERED"
    INTAKE_TAKEN = "INTAKE_TAKEN"
    INTAKE_SET_ASIDE = "INTAKE_SET_ASIDE"
    INTAKE_REFUSED = "INTAKE_REFUSED"
    SEND_DONE = "SEND_DONE"
    PURGE_DONE = "PURGE_DONE"
    PURGE_STOPPED = "PURGE_STOPPED"
    PURGE_EMPTY = "PURGE_EMPTY"
    ARL_OVERDUE = "ARL_OVERDUE"
    CERT_EXPIRING = "CERT_EXPIRING"
    DISK_SPACE_BACK = "DISK_SPACE_BACK"
    BACKUP_DONE = "BACKUP_DONE"
    CRL_STORED = "CRL_STORED"
    CRL_REFUSED = "CRL_REFUSED"
    CRL_UNREACHABLE = "CRL_UNREACHABLE"
    DIRECTORY_FETCHED = "DIRECTORY_FETCHED"
    DIRECTORY_CHANGED = "DIRECTORY_CHANGED"
    DIRECTORY_REFUSED = "DIRECTORY_REFUSED"
    DIRECTORY_SKIPPED = "DIRECTORY_SKIPPED"


class SimCode(StrEnum):
    """The simulators of the demo and the tests (never on a box)."""

    SIM_DOVECOT = "SIM_DOVECOT"
    SIM_OCT = "SIM_OCT"
    SIM_PCSCD = "SIM_PCSCD"
    SIM_SMTPD = "SIM_SMTPD"
    SIM_SOFTHSM = "SIM_SOFTHSM"
    SIM_VCARD = "SIM_VCARD"
    RETURN_BUILD = "RETURN_BUILD"


AREAS: tuple[type[StrEnum], ...] = (
    GeneralCode,
    StoreCode,
    LotCode,
    DepotCode,
    MailCode,
    ReturnsCode,
    ParamCode,
    HygieneCode,
    BackupCode,
    CardCode,
    TrustCode,
    SetupCode,
    AgentEvent,
    SimCode,
)
