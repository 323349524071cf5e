"""Errors of the CMS layer: failures to build, open or verify a CMS structure or the MIME entity.

Each error carries a stable code (``CmsErrorCode``) and a French + English message.
"""

from __future__ import annotations

import enum

from balise.domain.errors import BaliseError


class CmsErrorCode(enum.StrEnum):
    """Stable codes of ``CmsError`` (used by tests, the journal and quarantine records)."""

    CMS = "CMS"  # the class's own code: a CmsError always says a more precise one
    MALFORMED = "CMS_MALFORMED"  # not DER, wrong structure, missing field
    UNSUPPORTED = "CMS_UNSUPPORTED"  # algorithm, version or form outside the v0 profile
    BAD_CERTIFICATE = "CMS_BAD_CERTIFICATE"  # unreadable certificate or wrong key type
    DIGEST_MISMATCH = "CMS_DIGEST_MISMATCH"  # messageDigest does not match the content
    BAD_SIGNATURE = "CMS_BAD_SIGNATURE"  # signature does not verify with the signer's key
    UNTRUSTED_SIGNER = "CMS_UNTRUSTED_SIGNER"  # signer does not chain to a trusted root
    NOT_RECIPIENT = "CMS_NOT_RECIPIENT"  # no RecipientInfo for this certificate
    DECRYPT_FAILED = "CMS_DECRYPT_FAILED"  # key or content decryption failed
    BAD_ENTITY = "CMS_BAD_ENTITY"  # MIME entity malformed or out of bounds
    BAD_COMPRESSION = "CMS_BAD_COMPRESSION"  # gzip payload unreadable
    NO_RECIPIENTS = "CMS_NO_RECIPIENTS"  # an envelope needs at least one recipient
    TOO_LARGE = "CMS_TOO_LARGE"  # input or decompressed output over its size cap


class CmsError(BaliseError):
    """A CMS structure or MIME entity could not be built, opened or verified."""

    code = CmsErrorCode.CMS

    def __init__(self, code: CmsErrorCode, fr: str, en: str) -> None:
        super().__init__(fr, en, code=code)
        self.cms_code = code
