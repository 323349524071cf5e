"""CMS EnvelopedData (RFC 5652) of PROFILE.md §2 step 4: one KeyTransRecipientInfo per recipient.

The content key and IV come from ``secrets``; AES-CBC and RSA come from ``cryptography``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any, Final, Literal

from asn1crypto import algos, cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from balise.cms._certs import load_rsa_certificate
from balise.cms.errors import CmsError, CmsErrorCode

KeyEncryption = Literal["rsaes_pkcs1v15", "rsaes_oaep"]
ContentCipher = Literal["aes256_cbc", "aes128_cbc"]

# Key sizes of the ciphers accepted when opening; only the two ContentCipher values are produced.
_KEY_SIZES: Final[dict[str, int]] = {"aes128_cbc": 16, "aes192_cbc": 24, "aes256_cbc": 32}
_OAEP_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_BLOCK: Final = 16
# The entity carries at most an 8 MiB lot, gzip'd then base64'd: 16 MiB bounds what we open.
DEFAULT_MAX_ENVELOPED_DATA: Final = 16 * 1024 * 1024


def build_enveloped_data(
    content: bytes,
    recipient_certs_der: Sequence[bytes],
    *,
    key_encryption: KeyEncryption = "rsaes_pkcs1v15",
    content_cipher: ContentCipher = "aes256_cbc",
) -> bytes:
    """DER ``ContentInfo(EnvelopedData)`` of ``content`` for every recipient certificate."""
    if key_encryption not in ("rsaes_pkcs1v15", "rsaes_oaep"):
        raise _unsupported(
            f"chiffrement de clé {key_encryption}", f"key encryption {key_encryption}"
        )
    if content_cipher not in ("aes256_cbc", "aes128_cbc"):
        raise _unsupported(f"chiffrement {content_cipher}", f"cipher {content_cipher}")
    if not recipient_certs_der:
        raise CmsError(
            CmsErrorCode.NO_RECIPIENTS,
            "Aucun certificat destinataire : l'enveloppe ne pourrait être ouverte par personne.",
            "No recipient certificate: nobody could open the envelope.",
        )
    recipients = [
        load_rsa_certificate(der, "destinataire", "recipient") for der in recipient_certs_der
    ]

    cek = secrets.token_bytes(_KEY_SIZES[content_cipher])
    iv = secrets.token_bytes(_BLOCK)
    padder = sym_padding.PKCS7(_BLOCK * 8).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    encrypted_content = encryptor.update(padded) + encryptor.finalize()

    key_pad, key_alg = _key_encryption(key_encryption)
    recipient_infos = []
    seen: set[bytes] = set()
    for recipient in recipients:
        # The same certificate twice (e.g. listed for both AMO and AMC) needs one RecipientInfo.
        if recipient.der in seen:
            continue
        seen.add(recipient.der)
        ktri = cms.KeyTransRecipientInfo(
            {
                "version": "v0",
                "rid": cms.RecipientIdentifier(
                    name="issuer_and_serial_number",
                    value=cms.IssuerAndSerialNumber(recipient.issuer_and_serial()),
                ),
                "key_encryption_algorithm": key_alg,
                "encrypted_key": recipient.public_key.encrypt(cek, key_pad),
            }
        )
        recipient_infos.append(cms.RecipientInfo(name="ktri", value=ktri))

    enveloped = cms.EnvelopedData(
        {
            # v0: only KeyTransRecipientInfo v0, no originatorInfo, no unprotected attributes.
            "version": "v0",
            "recipient_infos": recipient_infos,
            "encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": content_cipher, "parameters": iv},
                "encrypted_content": encrypted_content,
            },
        }
    )
    out: bytes = cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump()
    return out


def open_enveloped_data(
    der: bytes,
    private_key: rsa.RSAPrivateKey,
    cert_der: bytes,
    *,
    max_size: int = DEFAULT_MAX_ENVELOPED_DATA,
) -> bytes:
    """Decrypt an EnvelopedData as the holder of ``cert_der`` and ``private_key`` (simulator)."""
    if len(der) > max_size:
        raise CmsError(
            CmsErrorCode.TOO_LARGE,
            f"Enveloppe trop volumineuse ({len(der)} octets).",
            f"Envelope too large ({len(der)} bytes).",
        )
    own = load_rsa_certificate(cert_der, "destinataire", "recipient")
    if private_key.public_key().public_numbers() != own.public_key.public_numbers():
        raise CmsError(
            CmsErrorCode.BAD_CERTIFICATE,
            "La clé privée ne correspond pas au certificat destinataire.",
            "The private key does not match the recipient certificate.",
        )
    try:
        ktri, cipher_name, iv, encrypted_content = _walk_enveloped_data(der, own)
        key_pad = _key_padding_from(ktri["key_encryption_algorithm"])
        encrypted_key = bytes(ktri["encrypted_key"].native)
    except CmsError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise _malformed("structure ASN.1 invalide", "invalid ASN.1 structure") from exc

    try:
        cek = private_key.decrypt(encrypted_key, key_pad)
        # With PKCS#1 v1.5 implicit rejection a wrong key yields random bytes, not an error:
        # the length and the padding checks below catch it.
        if len(cek) != _KEY_SIZES[cipher_name] or len(encrypted_content) % _BLOCK != 0:
            raise ValueError("wrong content key or ciphertext length")
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(encrypted_content) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(_BLOCK * 8).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise CmsError(
            CmsErrorCode.DECRYPT_FAILED,
            "Le déchiffrement de l'enveloppe a échoué.",
            "Decrypting the envelope failed.",
        ) from exc


# --- internals ---------------------------------------------------------------------------------


def _malformed(what_fr: str, what_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.MALFORMED,
        f"Enveloppe mal formée : {what_fr}.",
        f"Malformed envelope: {what_en}.",
    )


def _unsupported(what_fr: str, what_en: str) -> CmsError:
    return CmsError(
        CmsErrorCode.UNSUPPORTED,
        f"Enveloppe hors profil : {what_fr}.",
        f"Envelope outside the profile: {what_en}.",
    )


def _key_encryption(name: KeyEncryption) -> tuple[padding.AsymmetricPadding, Any]:
    if name == "rsaes_oaep":
        # asn1crypto trap: RSAESOAEPParams({}) fails, and the SHA-1 defaults are not what we use.
        params = algos.RSAESOAEPParams(
            {
                "hash_algorithm": {"algorithm": "sha256"},
                "mask_gen_algorithm": {
                    "algorithm": "mgf1",
                    "parameters": {"algorithm": "sha256"},
                },
            }
        )
        pad: padding.AsymmetricPadding = padding.OAEP(
            mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
        return pad, cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_oaep", "parameters": params})
    # RFC 3370 §4.2.1: rsaEncryption carries NULL parameters.
    alg = cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()})
    return padding.PKCS1v15(), alg


def _key_padding_from(alg: Any) -> padding.AsymmetricPadding:
    name = alg["algorithm"].native
    if name == "rsaes_pkcs1v15":
        return padding.PKCS1v15()
    if name != "rsaes_oaep":
        raise _unsupported(f"chiffrement de clé {name}", f"key encryption {name}")
    params = alg["parameters"]
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    if mgf["algorithm"].native != "mgf1":
        raise _unsupported("OAEP sans MGF1", "OAEP without MGF1")
    mgf_hash = mgf["parameters"]["algorithm"].native
    if hash_name not in _OAEP_HASHES or mgf_hash not in _OAEP_HASHES:
        raise _unsupported(f"OAEP avec {hash_name}/{mgf_hash}", f"OAEP with {hash_name}/{mgf_hash}")
    label = params["p_source_algorithm"]["parameters"].native or None
    return padding.OAEP(
        mgf=padding.MGF1(_OAEP_HASHES[mgf_hash]()),
        algorithm=_OAEP_HASHES[hash_name](),
        label=bytes(label) if label else None,
    )


def _walk_enveloped_data(der: bytes, own: Any) -> tuple[Any, str, bytes, bytes]:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].native != "enveloped_data":
        raise _malformed("ce n'est pas un EnvelopedData", "not an EnvelopedData")
    ed = info["content"]
    ktri = None
    for ri in ed["recipient_infos"]:
        if ri.name != "ktri":
            continue  # key agreement, KEK or password recipients are not ours
        rid = ri.chosen["rid"]
        if rid.name == "issuer_and_serial_number":
            match = own.matches_issuer_and_serial(rid.chosen)
        else:
            match = own.matches_key_identifier(bytes(rid.chosen.native))
        if match:
            ktri = ri.chosen
            break
    if ktri is None:
        raise CmsError(
            CmsErrorCode.NOT_RECIPIENT,
            "Cette enveloppe n'est pas adressée à ce certificat.",
            "This envelope is not addressed to this certificate.",
        )
    eci = ed["encrypted_content_info"]
    cipher = eci["content_encryption_algorithm"]
    cipher_name = cipher["algorithm"].native
    if cipher_name not in _KEY_SIZES:
        raise _unsupported(f"chiffrement {cipher_name}", f"cipher {cipher_name}")
    iv = bytes(cipher["parameters"].native)
    if len(iv) != _BLOCK:
        raise _malformed("vecteur d'initialisation invalide", "invalid IV")
    if eci["encrypted_content"].native is None:
        raise _unsupported("contenu chiffré détaché", "detached encrypted content")
    return ktri, cipher_name, iv, bytes(eci["encrypted_content"].native)
