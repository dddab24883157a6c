"""Fetch a web page over HTTP(S), only from public addresses, optionally as Markdown or text.

Every hop (the URL and each redirect, at most 5, followed here rather than by httpx) is checked:
http/https only, the agent's allowed/blocked domains, and the host's addresses after DNS resolution
(`core.net`). The request then goes to the checked IP itself, with the original `Host` header and
TLS server name, so a second DNS answer can never be used.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, Literal

import httpx
import msgspec
from bs4 import BeautifulSoup
from markdownify import MarkdownConverter

from capabilities.base import CapabilityConfig, CapabilitySpec, Tool, ToolContext, ToolError
from core.net import BlockedAddress, ip_literal, resolve_public

MAX_REDIRECTS = 5
MAX_BODY_BYTES = 2 * 1024 * 1024
CONNECT_TIMEOUT_S = 10.0
TOTAL_TIMEOUT_S = 30.0
USER_AGENT = "Everloop-WebFetch/1.0"
REDIRECTS = {301, 302, 303, 307, 308}
TEXTUAL = re.compile(r"^(text/|application/(json|xml|xhtml\+xml|javascript|ld\+json|rss\+xml|atom\+xml))")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$"
)

Domains = Annotated[
    list[str],
    msgspec.Meta(
        max_length=500,
        description="Host names; each also covers its subdomains (example.com covers docs.example.com)",
    ),
]


def _domains(values: list[str], field: str) -> list[str]:
    cleaned = []
    for value in values:
        domain = value.strip().lower().removeprefix("*.").removeprefix(".").rstrip(".")
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            domain = ""
        if not _DOMAIN.match(domain):
            raise ValueError(f"{value!r} is not a domain name - at `$.{field}`")
        cleaned.append(domain)
    return cleaned


class WebFetchConfig(CapabilityConfig, frozen=True):
    allowed_domains: Annotated[
        Domains, msgspec.Meta(description="If not empty, only these domains (and their subdomains)")
    ] = []
    blocked_domains: Annotated[
        Domains, msgspec.Meta(description="Never these domains (and their subdomains); wins over allowed")
    ] = []

    def __post_init__(self) -> None:
        # Normalised once here, so what is stored and compared is lower-case ASCII (IDNA).
        msgspec.structs.force_setattr(
            self, "allowed_domains", _domains(self.allowed_domains, "allowed_domains")
        )
        msgspec.structs.force_setattr(
            self, "blocked_domains", _domains(self.blocked_domains, "blocked_domains")
        )


class WebFetch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=8192, description="An http or https URL")]
    method: Literal["GET", "HEAD"] = "GET"
    as_markdown: Annotated[bool, msgspec.Meta(description="Convert an HTML page to Markdown")] = False
    as_text: Annotated[bool, msgspec.Meta(description="Convert an HTML page to plain text")] = False


def _covered(host: str, domains: list[str]) -> bool:
    return any(host == d or host.endswith(f".{d}") for d in domains)


def _check_domain(host: str, config: WebFetchConfig) -> None:
    host = host.lower().rstrip(".")
    if _covered(host, config.blocked_domains):
        raise ToolError(f"refused: {host} is a blocked domain for this agent")
    if config.allowed_domains and not _covered(host, config.allowed_domains):
        raise ToolError(f"refused: {host} is not among this agent's allowed domains")


async def _send_pinned(
    client: httpx.AsyncClient, method: str, url: httpx.URL, ctx: ToolContext
) -> httpx.Response:
    """Sends a request for `url` to an address checked here (the next one if a connection fails),
    with the URL's Host header and TLS server name; returns the response, its body not yet read."""
    if url.scheme not in ("http", "https"):
        raise ToolError(f"refused: only http and https URLs can be fetched, not {url.scheme or 'this'!r}")
    host = url.raw_host.decode("ascii")
    if not host:
        raise ToolError("refused: the URL has no host")
    _check_domain(host, ctx.config_as(WebFetchConfig))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        addresses = await resolve_public(host, port, ctx.network)
    except BlockedAddress as exc:
        raise ToolError(str(exc)) from None
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and ip_literal(host) is None:
        extensions["sni_hostname"] = host  # the certificate is checked against the name
    headers = {"host": url.netloc.decode("ascii"), "user-agent": USER_AGENT, "accept": "*/*"}
    for index, address in enumerate(addresses):
        target = url.copy_with(host=str(address))
        request = client.build_request(method, target, headers=headers, extensions=extensions)
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError:
            if index == len(addresses) - 1:
                raise
    raise AssertionError("resolve_public returns at least one address")


async def _read_capped(response: httpx.Response) -> tuple[bytes, bool]:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return bytes(body[:MAX_BODY_BYTES]), True
    return bytes(body), False


def _convert(html: str, args: WebFetch) -> str:
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    if args.as_markdown:
        markdown = MarkdownConverter(heading_style="ATX", bullets="-").convert_soup(soup)
        return re.sub(r"\n{3,}", "\n\n", str(markdown)).strip()
    lines = (line.strip() for line in soup.get_text("\n").splitlines())
    return "\n".join(line for line in lines if line)


async def _fetch(args: WebFetch, ctx: ToolContext) -> dict[str, Any]:
    try:
        url = httpx.URL(args.url.strip())
    except httpx.InvalidURL as exc:
        raise ToolError(f"invalid URL: {exc}") from None
    redirects: list[str] = []
    timeout = httpx.Timeout(TOTAL_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    # No proxies from the environment (they would connect by name), no automatic redirects.
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        while True:
            response = await _send_pinned(client, args.method, url, ctx)
            try:
                location = response.headers.get("location")
                if response.status_code in REDIRECTS and location:
                    if len(redirects) >= MAX_REDIRECTS:
                        raise ToolError(f"too many redirects (more than {MAX_REDIRECTS})")
                    try:
                        url = url.join(location)
                    except httpx.InvalidURL as exc:
                        raise ToolError(f"invalid redirect to {location!r}: {exc}") from None
                    redirects.append(str(url))
                    continue
                content_type = response.headers.get("content-type", "")
                result: dict[str, Any] = {
                    "url": str(url),
                    "status_code": response.status_code,
                    "content_type": content_type or None,
                }
                if redirects:
                    result["redirects"] = redirects
                if args.method == "HEAD":
                    result["headers"] = dict(response.headers)
                    return result
                body, truncated = await _read_capped(response)
            finally:
                await response.aclose()
            media = content_type.split(";")[0].strip().lower()
            if media and not TEXTUAL.match(media):
                result["content"] = None
                result["note"] = f"binary content ({media}, {len(body)} bytes) is not returned"
                return result
            text = body.decode(response.encoding or "utf-8", errors="replace")
            if (args.as_markdown or args.as_text) and media in ("text/html", "application/xhtml+xml", ""):
                text = _convert(text, args)
                result["format"] = "markdown" if args.as_markdown else "text"
            result["content"] = text
            if truncated:
                result["truncated"] = True
                result["note"] = f"the body was cut at {MAX_BODY_BYTES} bytes (2 MB); the rest was not read"
            return result


async def web_fetch(args: WebFetch, ctx: ToolContext) -> dict[str, Any]:
    if args.as_markdown and args.as_text:
        raise ToolError("choose as_markdown or as_text, not both")
    try:
        async with asyncio.timeout(TOTAL_TIMEOUT_S):
            return await _fetch(args, ctx)
    except TimeoutError:
        raise ToolError(f"the fetch did not finish within {TOTAL_TIMEOUT_S:g} s") from None
    except httpx.TimeoutException as exc:
        raise ToolError(f"timed out: {type(exc).__name__}") from None
    except httpx.HTTPError as exc:
        raise ToolError(f"the fetch failed: {type(exc).__name__}: {exc}") from None


CAPABILITY = CapabilitySpec(
    id="web_fetch",
    name="Web Fetch",
    description="Fetch web pages and other content from public URLs, as Markdown or plain text on request",
    icon="globe",
    category="Web",
    system_prompt=None,
    timeout_s=45.0,
    config=WebFetchConfig,
    tools=(
        Tool(
            name="web_fetch",
            description=(
                "Fetch a public http(s) URL (GET, or HEAD for headers only). Set as_markdown or as_text "
                "to get an HTML page converted. Bodies over 2 MB are cut."
            ),
            params=WebFetch,
            handler=web_fetch,
        ),
    ),
)
