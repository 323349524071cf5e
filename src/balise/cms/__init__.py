"""CMS layer of PROFILE.md §2: SignedData with a signing callback, gzip payload, MIME entity,
EnvelopedData. Pure: asn1crypto for the structures, cryptography for the primitives; never PKCS#11.
"""

from balise.cms.enveloped import (
    ContentCipher,
    KeyEncryption,
    build_enveloped_data,
    open_enveloped_data,
)
from balise.cms.errors import CmsError, CmsErrorCode
from balise.cms.payload import (
    build_entity,
    content_description,
    entity_filename,
    gunzip_payload,
    gzip_payload,
    parse_entity,
)
from balise.cms.signed import (
    PreparedSignature,
    SignatureAlgorithm,
    VerifiedContent,
    prepare_signature,
    sign_data,
    verify_signed_data,
)

__all__ = [
    "CmsError",
    "CmsErrorCode",
    "ContentCipher",
    "KeyEncryption",
    "PreparedSignature",
    "SignatureAlgorithm",
    "VerifiedContent",
    "build_entity",
    "build_enveloped_data",
    "content_description",
    "entity_filename",
    "gunzip_payload",
    "gzip_payload",
    "open_enveloped_data",
    "parse_entity",
    "prepare_signature",
    "sign_data",
    "verify_signed_data",
]
