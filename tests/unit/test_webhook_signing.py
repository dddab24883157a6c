"""Standard Webhooks signing: the specification's own example signs as it says, and secrets are
made, kept or refused as docs/webhooks.md says."""

from __future__ import annotations

import base64

import pytest

from core.errors import InvalidInput
from services import webhook_signing


def test_the_standard_webhooks_example_signs_as_published() -> None:
    # The example of the Standard Webhooks specification and its libraries' tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signed = webhook_signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = webhook_signing.headers(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-timestamp"] == "1614265330" and headers["webhook-signature"] == signed


def test_a_made_secret_has_32_random_bytes() -> None:
    one, two = webhook_signing.new_secret(), webhook_signing.new_secret()
    assert one != two and one.startswith("whsec_") and len(base64.b64decode(one[6:])) == 32


def test_given_secrets() -> None:
    given = "whsec_" + base64.b64encode(b"x" * 16).decode()
    assert webhook_signing.normalised(given) == given
    assert (
        webhook_signing.normalised("sixteen bytes!!!")
        == "whsec_" + base64.b64encode(b"sixteen bytes!!!").decode()
    )
    for bad, says in (
        ("fifteen bytes!!", "16 to 64 bytes"),
        ("x" * 65, "16 to 64 bytes"),
        ("whsec_" + base64.b64encode(b"x" * 15).decode(), "16 to 64 bytes"),
        ("whsec_%%%", "base64"),
    ):
        with pytest.raises(InvalidInput, match=says):
            webhook_signing.normalised(bad)
