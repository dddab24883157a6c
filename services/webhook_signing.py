"""Standard Webhooks signing (https://www.standardwebhooks.com): a secret is `whsec_` and the
base64 of its key; each attempt sends `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature: v1,<base64 of HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, so a receiver
verifies with any Standard Webhooks library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from core.errors import InvalidInput

PREFIX = "whsec_"
KEY_BYTES = 32  # of a secret made here
MIN_KEY_BYTES = 16  # a shorter key is guessable offline from one signed request
MAX_KEY_BYTES = 64


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def normalised(given: str) -> str:
    """A client's secret as stored: `whsec_<base64>` as is (its key must decode), anything else
    taken as the key's bytes (UTF-8) and stored as `whsec_` + their base64, so receivers verify
    with that form. Raises InvalidInput naming the problem (too short, not base64)."""
    if given.startswith(PREFIX):
        try:
            key = base64.b64decode(given[len(PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("secret: after whsec_ must come base64", field="secret") from None
    else:
        key = given.encode()
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidInput(
            f"secret: the key must be {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes (got {len(key)}); "
            "omit it to have one made",
            field="secret",
        )
    return PREFIX + base64.b64encode(key).decode()


def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(PREFIX))


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key_of(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
