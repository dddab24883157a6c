"""Secrets at rest: AES-256-GCM envelope encryption under a master key from the environment.

Each secret gets its own random data key; the data key is stored wrapped (encrypted) by the master
key. A ciphertext names the master key that wrapped it (`kid`), so during a rotation the previous
key still opens old rows and `everloop rotate-secrets` re-wraps them under the current one. The
associated data binds a ciphertext to its row and purpose, so it cannot be copied to another row.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.settings import Settings

KEY_FILE = "secrets.key"
JWT_SECRET_FILE = "jwt.secret"  # noqa: S105 - a file name


class SecretsError(Exception):
    """A secret cannot be opened: wrong or missing master key, or tampered ciphertext."""


class _Sealed(msgspec.Struct, kw_only=True, frozen=True):
    v: int
    kid: str
    dek_nonce: bytes
    wrapped_dek: bytes
    nonce: bytes
    ciphertext: bytes


def key_id(master: bytes) -> str:
    return hashlib.sha256(b"everloop-master-key:" + master).hexdigest()[:16]


class SecretBox:
    def __init__(self, current: bytes, previous: bytes | None = None) -> None:
        if len(current) != 32 or (previous is not None and len(previous) != 32):
            raise ValueError("master keys are 32 bytes")
        self.current_kid = key_id(current)
        self._keys = {self.current_kid: current}
        if previous is not None:
            self._keys.setdefault(key_id(previous), previous)

    def seal(self, plaintext: str, context: str) -> bytes:
        dek = AESGCM.generate_key(bit_length=256)
        dek_nonce, nonce = os.urandom(12), os.urandom(12)
        aad = context.encode()
        sealed = _Sealed(
            v=1,
            kid=self.current_kid,
            dek_nonce=dek_nonce,
            wrapped_dek=AESGCM(self._keys[self.current_kid]).encrypt(dek_nonce, dek, aad),
            nonce=nonce,
            ciphertext=AESGCM(dek).encrypt(nonce, plaintext.encode(), aad),
        )
        return msgspec.json.encode(sealed)

    def open(self, blob: bytes, context: str) -> str:
        try:
            sealed = msgspec.json.decode(blob, type=_Sealed)
        except msgspec.DecodeError:
            raise SecretsError("not a sealed secret") from None
        master = self._keys.get(sealed.kid)
        if master is None:
            raise SecretsError(
                f"sealed under master key {sealed.kid}, which is neither SECRETS_ENCRYPTION_KEY nor "
                "SECRETS_ENCRYPTION_KEY_PREVIOUS"
            )
        aad = context.encode()
        try:
            dek = AESGCM(master).decrypt(sealed.dek_nonce, sealed.wrapped_dek, aad)
            return AESGCM(dek).decrypt(sealed.nonce, sealed.ciphertext, aad).decode()
        except InvalidTag:
            raise SecretsError("the secret does not open: tampered, or bound to another row") from None

    def needs_rewrap(self, blob: bytes) -> bool:
        return msgspec.json.decode(blob, type=_Sealed).kid != self.current_kid


def dev_master_key(data_dir: Path) -> str:
    """The data directory's own master key, made once (base64), for `everloop dev`."""
    return _dev_secret(data_dir / KEY_FILE)


def dev_jwt_secret(data_dir: Path) -> str:
    """The data directory's own token-signing secret, made once, for `everloop dev`."""
    return _dev_secret(data_dir / JWT_SECRET_FILE)


def _dev_secret(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
    return path.read_text().strip()


def secret_box(settings: Settings) -> SecretBox | None:
    """None when no master key is configured: storing a key then fails with a clear 503."""
    if settings.secrets_encryption_key is None:
        return None
    return SecretBox(settings.secrets_encryption_key, settings.secrets_encryption_key_previous)
