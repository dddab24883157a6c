"""A small OAuth 2.0 / OpenID Connect provider for the sign-in tests: discovery, authorize, token (with
PKCE S256 checked), userinfo and JWKS, plus GitHub's authorize, access_token, /user and /user/emails
shapes. It signs in whoever the browser names with `login_as` (no password page) and remembers what it
was asked, so tests can check what Everloop sent."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, Request, get, post
from litestar.exceptions import HTTPException
from litestar.response import Redirect

CLIENT_ID, CLIENT_SECRET = "everloop-test", "test-client-secret"


@dataclass
class Grant:
    redirect_uri: str
    challenge: str
    nonce: str | None
    email: str
    subject: str


@dataclass
class ProviderState:
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    grants: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, Grant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    verified: bool = True  # whether emails come back verified
    wrong_nonce: bool = False
    email_in_id_token: bool = True  # False: the client must ask /userinfo
    userinfo_calls: int = 0


def _issuer(request: Request[Any, Any, Any]) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def _subject(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()[:16]


def create_provider_app() -> tuple[Litestar, ProviderState]:
    state = ProviderState()

    @get("/.well-known/openid-configuration")
    async def discovery(request: Request[Any, Any, Any]) -> dict[str, Any]:
        base = _issuer(request)
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "userinfo_endpoint": f"{base}/userinfo",
            "jwks_uri": f"{base}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
        }

    def _grant(request: Request[Any, Any, Any], with_nonce: bool) -> Redirect:
        query = dict(request.query_params)
        state.authorize_requests.append(query)
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            raise HTTPException(status_code=400, detail="bad client or no PKCE")
        email = query.get("login_as", "someone@example.com")
        code = secrets.token_urlsafe(16)
        state.grants[code] = Grant(
            redirect_uri=query["redirect_uri"],
            challenge=query["code_challenge"],
            nonce=query.get("nonce") if with_nonce else None,
            email=email,
            subject=_subject(email),
        )
        return Redirect(f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}")

    @get("/authorize")
    async def authorize(request: Request[Any, Any, Any]) -> Redirect:
        return _grant(request, with_nonce=True)

    @get("/login/oauth/authorize")
    async def github_authorize(request: Request[Any, Any, Any]) -> Redirect:
        return _grant(request, with_nonce=False)

    async def _redeem(request: Request[Any, Any, Any]) -> tuple[Grant, str]:
        form = dict(await request.form())
        if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
            raise HTTPException(status_code=401, detail="invalid_client")
        grant = state.grants.pop(str(form.get("code")), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            raise HTTPException(status_code=400, detail="invalid_grant")
        digest = hashlib.sha256(str(form.get("code_verifier", "")).encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            raise HTTPException(status_code=400, detail="invalid_grant: PKCE verifier does not match")
        access = secrets.token_urlsafe(16)
        state.tokens[access] = grant
        return grant, access

    @post("/token", status_code=200)
    async def token(request: Request[Any, Any, Any]) -> dict[str, Any]:
        grant, access = await _redeem(request)
        now = int(time.time())
        claims = {
            "iss": _issuer(request),
            "sub": grant.subject,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": "not-the-one" if state.wrong_nonce else grant.nonce,
            "name": grant.email.split("@")[0],
            "picture": f"https://avatars.example.com/{grant.subject}.png",
        }
        if state.email_in_id_token:
            claims |= {"email": grant.email, "email_verified": state.verified}
        id_token = jwt.encode(claims, state.key, algorithm="RS256", headers={"kid": "test-key"})
        return {"access_token": access, "token_type": "Bearer", "id_token": id_token, "expires_in": 300}

    @post("/login/oauth/access_token", status_code=200)
    async def github_token(request: Request[Any, Any, Any]) -> dict[str, Any]:
        _, access = await _redeem(request)
        return {"access_token": access, "token_type": "bearer", "scope": "read:user,user:email"}

    def _holder(request: Request[Any, Any, Any]) -> Grant:
        grant = state.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))
        if grant is None:
            raise HTTPException(status_code=401, detail="bad token")
        return grant

    @get("/userinfo")
    async def userinfo(request: Request[Any, Any, Any]) -> dict[str, Any]:
        grant = _holder(request)
        state.userinfo_calls += 1
        return {"sub": grant.subject, "email": grant.email, "email_verified": state.verified}

    @get("/jwks")
    async def jwks() -> dict[str, Any]:
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(state.key.public_key()))
        return {"keys": [{**public, "kid": "test-key", "use": "sig", "alg": "RS256"}]}

    @get("/api/user")
    async def github_user(request: Request[Any, Any, Any]) -> dict[str, Any]:
        grant = _holder(request)
        return {
            "id": int(grant.subject, 16) % 10**9,
            "login": grant.email.split("@")[0],
            "name": None,
            "avatar_url": f"https://avatars.example.com/gh/{grant.subject}",
        }

    @get("/api/user/emails")
    async def github_emails(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        grant = _holder(request)
        return [
            {"email": "old@example.com", "primary": False, "verified": True},
            {"email": grant.email, "primary": True, "verified": state.verified},
        ]

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    handlers = [
        discovery,
        authorize,
        github_authorize,
        token,
        github_token,
        userinfo,
        jwks,
        github_user,
        github_emails,
        health,
    ]
    return Litestar(route_handlers=handlers, openapi_config=None), state
