"""The outbound address guard (core/net.py): what counts as public, and names resolved first."""

from __future__ import annotations

import ipaddress

import pytest

from core.db.models import Message
from core.net import BlockedAddress, NetPolicy, Unresolvable, address_problem, resolve_public, url_refusal
from services.conversation import refused_image

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fd12:3456::1": "private",
    "169.254.169.254": "cloud metadata",
    "169.254.1.1": "link-local",
    "fe80::1": "link-local",
    "fd00:ec2::254": "cloud metadata",
    "100.100.100.200": "cloud metadata",
    "100.64.0.1": "non-public",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "private",
    "::ffff:127.0.0.1": "loopback address wrapped in IPv6",
    "::ffff:169.254.169.254": "cloud metadata address wrapped in IPv6",
    "2002:a00:1::1": "private address wrapped in IPv6",
    "64:ff9b::a00:1": "private address wrapped in IPv6",
}


@pytest.mark.parametrize(("address", "kind"), sorted(REFUSED.items()))
def test_non_public_addresses_are_refused(address: str, kind: str) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert problem is not None and kind in problem


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "2a00:1450:4001::1"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_the_loopback_allowance_covers_loopback_only() -> None:
    policy = NetPolicy(allow_loopback=True)
    assert address_problem(ipaddress.ip_address("127.0.0.1"), policy) is None
    assert address_problem(ipaddress.ip_address("::1"), policy) is None
    for other in ("10.0.0.1", "169.254.169.254", "0.0.0.0"):
        assert address_problem(ipaddress.ip_address(other), policy) is not None


async def test_names_are_checked_after_resolution() -> None:
    with pytest.raises(BlockedAddress, match=r"localhost resolves to .*loopback"):
        await resolve_public("localhost", 80)
    assert ipaddress.ip_address("127.0.0.1") in await resolve_public(
        "localhost", 80, NetPolicy(allow_loopback=True)
    )
    with pytest.raises(BlockedAddress, match=r"10\.0\.0\.7 is a private address"):
        await resolve_public("10.0.0.7", 80)
    with pytest.raises(Unresolvable, match="cannot resolve"):  # a BlockedAddress too
        await resolve_public("no-such-host.invalid", 80)
    assert await resolve_public("8.8.8.8", 443) == [ipaddress.ip_address("8.8.8.8")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://10.0.0.7/a.png", "10.0.0.7 is a private address"),
        ("https://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://localhost:8080/a.png", "localhost resolves to a loopback address"),
        ("http://[::1/a.png", "not a valid URL"),
        ("ftp://8.8.8.8/a.png", "not an http(s) URL"),
        ("https://8.8.8.8/a.png", None),
        # Not found here: nothing of this server reaches it, and a provider resolves it on its own.
        ("https://no-such-host.invalid/a.png", None),
    ],
)
async def test_url_refusal_says_why_or_nothing(url: str, expected: str | None) -> None:
    assert await url_refusal(url, dns_wait_s=5) == expected


async def test_url_refusal_follows_the_policy() -> None:
    allow = NetPolicy(allow_loopback=True)
    assert await url_refusal("http://127.0.0.1:9/a.png", allow, dns_wait_s=5) is None
    assert await url_refusal("http://10.0.0.1/a.png", allow, dns_wait_s=5) == "10.0.0.1 is a private address"


def _message(sequence: int, role: str, *parts: dict[str, str]) -> Message:
    return Message(sequence=sequence, role=role, content=list(parts))


async def test_refused_image_names_the_message_and_the_reason() -> None:
    public = {"type": "image", "url": "https://8.8.8.8/cat.png"}
    conversation = [
        _message(1, "user", {"type": "text", "text": "hi"}, public),
        _message(2, "agent", {"type": "text", "text": "http://10.0.0.1/ is not an image part"}),
        _message(3, "user", public, {"type": "image", "url": "http://10.0.0.1/cat.png"}),
        _message(4, "user", {"type": "image", "url": "http://127.0.0.1/cat.png"}),
    ]
    assert await refused_image(conversation[:2], NetPolicy()) is None
    assert await refused_image(conversation, NetPolicy()) == (
        "an image URL in message 3 was refused by this server: 10.0.0.1 is a private address (an image "
        "must be on a public internet address), so the model was not called"
    )
    found = await refused_image(conversation[3:], NetPolicy())
    assert found is not None and "message 4" in found and "127.0.0.1 is a loopback address" in found
    assert await refused_image(conversation[3:], NetPolicy(allow_loopback=True)) is None
    inline = {"type": "image", "base64": "AAAA", "media_type": "image/png"}
    assert await refused_image([_message(5, "user", inline)], NetPolicy()) is None
