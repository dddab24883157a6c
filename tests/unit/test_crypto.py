from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import msgspec
import pytest

from core.crypto import SecretBox, SecretsError, dev_master_key

OLD, NEW = os.urandom(32), os.urandom(32)


def test_seal_and_open() -> None:
    box = SecretBox(NEW)
    sealed = box.seal("sk-secret", "row-1")
    assert b"sk-secret" not in sealed
    assert box.open(sealed, "row-1") == "sk-secret"
    assert box.seal("sk-secret", "row-1") != sealed  # fresh data key and nonces each time


def test_a_ciphertext_is_bound_to_its_row() -> None:
    box = SecretBox(NEW)
    sealed = box.seal("sk-secret", "row-1")
    with pytest.raises(SecretsError, match="bound to another row"):
        box.open(sealed, "row-2")


def test_tampering_is_detected() -> None:
    box = SecretBox(NEW)
    sealed = msgspec.json.decode(box.seal("sk-secret", "row-1"))
    # Flip one bit of the decoded ciphertext: editing a base64 character can land in padding bits
    # and change nothing.
    ciphertext = bytearray(base64.b64decode(sealed["ciphertext"]))
    ciphertext[0] ^= 1
    sealed["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()
    with pytest.raises(SecretsError):
        box.open(msgspec.json.encode(sealed), "row-1")


def test_rotation_opens_old_secrets_with_the_previous_key() -> None:
    old_sealed = SecretBox(OLD).seal("sk-old", "row-1")
    rotating = SecretBox(NEW, previous=OLD)
    assert rotating.needs_rewrap(old_sealed)
    assert rotating.open(old_sealed, "row-1") == "sk-old"
    resealed = rotating.seal("sk-old", "row-1")
    assert not rotating.needs_rewrap(resealed)
    assert SecretBox(NEW).open(resealed, "row-1") == "sk-old"
    with pytest.raises(SecretsError, match="neither SECRETS_ENCRYPTION_KEY"):
        SecretBox(NEW).open(old_sealed, "row-1")


def test_dev_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = dev_master_key(tmp_path)
    assert dev_master_key(tmp_path) == first
    assert stat.S_IMODE((tmp_path / "secrets.key").stat().st_mode) == 0o600
    assert SecretBox(base64.b64decode(first)).current_kid
