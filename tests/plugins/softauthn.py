"""A WebAuthn authenticator in Python (ES256, `none` attestation), for tests: it answers the
options Countersign hands out as a browser's authenticator would, so the server's verification
(py_webauthn) runs on real signatures. Nothing is mocked on the server side."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url, encode_cbor

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40


class SoftAuthenticator:
    def __init__(self, *, user_verified: bool = True) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0
        self.user_verified = user_verified

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        # COSE_Key: kty EC2 (2), alg ES256 (-7), crv P-256 (1), x, y.
        return encode_cbor({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, extra: int = 0) -> bytes:
        return bytes([FLAG_UP | (FLAG_UV if self.user_verified else 0) | extra])

    def register(self, options: dict[str, Any], *, origin: str) -> dict[str, Any]:
        """navigator.credentials.create(): the registration response as JSON."""
        rp_id = options["rp"]["id"]
        client_data = json.dumps(
            {"type": "webauthn.create", "challenge": options["challenge"], "origin": origin, "crossOrigin": False}
        ).encode()
        auth_data = (
            hashlib.sha256(rp_id.encode()).digest()
            + self._flags(FLAG_AT)
            + struct.pack(">I", self.sign_count)
            + bytes(16)  # AAGUID
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose_key()
        )
        attestation = encode_cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        cid = bytes_to_base64url(self.credential_id)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "attestationObject": bytes_to_base64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        }

    def assertion(
        self, options: dict[str, Any], *, origin: str, challenge: str | None = None, rp_id: str | None = None
    ) -> dict[str, Any]:
        """navigator.credentials.get(): an assertion as JSON (a challenge or RP ID of the caller's
        choosing, to test the server's refusals)."""
        self.sign_count += 1
        rp = rp_id or options["rpId"]
        client_data = json.dumps(
            {"type": "webauthn.get", "challenge": challenge or options["challenge"], "origin": origin}
        ).encode()
        auth_data = hashlib.sha256(rp.encode()).digest() + self._flags() + struct.pack(">I", self.sign_count)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        cid = bytes_to_base64url(self.credential_id)
        return {
            "id": cid,
            "rawId": cid,
            "type": "public-key",
            "response": {
                "clientDataJSON": bytes_to_base64url(client_data),
                "authenticatorData": bytes_to_base64url(auth_data),
                "signature": bytes_to_base64url(signature),
            },
            "clientExtensionResults": {},
        }
