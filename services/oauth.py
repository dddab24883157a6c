"""Sign-in through OAuth 2.0 / OpenID Connect: Google and any OIDC issuer (discovery, ID token checked
against the issuer's JWKS), and GitHub (OAuth 2.0 plus its REST API for the verified email).

Every flow uses `state` (single use, kept in Redis for ten minutes and bound to the browser by a
cookie) and PKCE (S256); OIDC flows also check the ID token's `nonce`. The first sign-in creates the
user; a later one with the same verified email links to the existing account.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Literal
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
import msgspec
import redis.asyncio as redis
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import OAuthIdentity, User
from core.errors import EverloopError, Forbidden, InvalidInput, NotFound
from core.settings import OAuthClient, Settings
from services import auth

STATE_TTL_S = 600
HTTP_TIMEOUT_S = 10.0
DISCOVERY_TTL_S = 3600.0
Kind = Literal["oidc", "github"]


class OAuthFailed(EverloopError):
    """The provider or the browser did not complete the flow (bad state, refused code, bad token)."""

    status_code = 401


class Provider(msgspec.Struct, kw_only=True, frozen=True):
    id: str  # google | github | oidc
    kind: Kind
    client: OAuthClient


class Pending(msgspec.Struct, kw_only=True):
    """What the callback needs from the start of the flow, kept under the `state` in Redis."""

    provider: str
    verifier: str
    nonce: str
    redirect_uri: str


class Profile(msgspec.Struct, kw_only=True, frozen=True):
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    picture: str | None = None  # the provider's avatar URL (OIDC `picture`, GitHub `avatar_url`)


MAX_PICTURE_URL = 2000


def _picture(value: object) -> str | None:
    """An avatar URL from the provider, kept only if it is a plain http(s) URL of sane length: the
    web UI puts it in an <img src>, so a `javascript:` or `data:` value is not passed on."""
    if not isinstance(value, str) or len(value) > MAX_PICTURE_URL:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("https", "http") and parts.hostname else None


def providers(settings: Settings) -> dict[str, Provider]:
    """The providers switched on in settings, by id."""
    found: dict[str, Provider] = {}
    if settings.oauth_google:
        found["google"] = Provider(id="google", kind="oidc", client=settings.oauth_google)
    if settings.oauth_github:
        found["github"] = Provider(id="github", kind="github", client=settings.oauth_github)
    if settings.oidc:
        found["oidc"] = Provider(id="oidc", kind="oidc", client=settings.oidc)
    return found


def provider(settings: Settings, provider_id: str) -> Provider:
    found = providers(settings).get(provider_id)
    if found is None:
        raise NotFound(f"no OAuth provider {provider_id!r} is configured")
    return found


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _state_key(state: str) -> str:
    return f"everloop:oauth:state:{hashlib.sha256(state.encode()).hexdigest()}"


_discovery: dict[str, tuple[float, dict[str, str]]] = {}


async def _discover(http: httpx.AsyncClient, issuer: str) -> dict[str, str]:
    cached = _discovery.get(issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
        return cached[1]
    try:
        response = await http.get(f"{issuer}/.well-known/openid-configuration")
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthFailed(f"the sign-in provider's discovery document did not load: {exc}") from None
    if document.get("issuer", "").rstrip("/") != issuer:
        raise OAuthFailed("the sign-in provider's discovery document names another issuer")
    _discovery[issuer] = (time.monotonic(), document)
    return dict(document)


async def start(
    store: redis.Redis, http: httpx.AsyncClient, chosen: Provider, redirect_uri: str
) -> tuple[str, str]:
    """The provider's authorization URL to send the browser to, and the `state` to bind to it."""
    state, verifier, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": chosen.client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": _challenge(verifier),
        "code_challenge_method": "S256",
    }
    if chosen.kind == "oidc":
        endpoint = (await _discover(http, chosen.client.issuer))["authorization_endpoint"]
        params |= {"scope": "openid email profile", "nonce": nonce}
    else:
        endpoint = f"{chosen.client.issuer}/login/oauth/authorize"
        params["scope"] = "read:user user:email"
    pending = Pending(provider=chosen.id, verifier=verifier, nonce=nonce, redirect_uri=redirect_uri)
    await store.set(_state_key(state), msgspec.json.encode(pending), ex=STATE_TTL_S)
    return f"{endpoint}?{urlencode(params)}", state


async def finish(
    store: redis.Redis, http: httpx.AsyncClient, chosen: Provider, *, code: str, state: str, bound_state: str
) -> Profile:
    """Checks the callback's `state` (known, unused, for this provider, and the browser's own) and
    exchanges the code (with the PKCE verifier) for the user's profile."""
    if not state or not secrets.compare_digest(state, bound_state):
        raise OAuthFailed("the sign-in did not start in this browser (state mismatch); start again")
    raw = await store.getdel(_state_key(state))
    if raw is None:
        raise OAuthFailed("the sign-in expired or was already used; start again")
    pending = msgspec.json.decode(raw, type=Pending)
    if pending.provider != chosen.id:
        raise OAuthFailed("the sign-in was started with another provider; start again")
    if chosen.kind == "oidc":
        return await _oidc_profile(http, chosen.client, code, pending)
    return await _github_profile(http, chosen.client, code, pending)


async def _post_token(
    http: httpx.AsyncClient, url: str, client: OAuthClient, code: str, pending: Pending
) -> dict[str, str]:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": pending.redirect_uri,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "code_verifier": pending.verifier,
    }
    try:
        response = await http.post(url, data=form, headers={"Accept": "application/json"})
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthFailed(f"the sign-in provider's token endpoint did not answer: {exc}") from None
    if response.status_code != 200 or "error" in body:
        raise OAuthFailed(f"the sign-in provider refused the code: {body.get('error', response.status_code)}")
    return dict(body)


async def _oidc_profile(http: httpx.AsyncClient, client: OAuthClient, code: str, pending: Pending) -> Profile:
    document = await _discover(http, client.issuer)
    tokens = await _post_token(http, document["token_endpoint"], client, code, pending)
    id_token = tokens.get("id_token")
    if not id_token:
        raise OAuthFailed("the sign-in provider sent no ID token")
    try:
        keys = jwt.PyJWKSet.from_dict((await http.get(document["jwks_uri"])).json())
        kid = jwt.get_unverified_header(id_token).get("kid")
        key = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
        if key is None:
            raise OAuthFailed("the ID token is signed with a key the provider does not publish")
        claims = jwt.decode(
            id_token,
            key.key,
            algorithms=["RS256", "ES256", "PS256"],
            audience=client.client_id,
            issuer=client.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except (jwt.PyJWTError, httpx.HTTPError, ValueError) as exc:
        raise OAuthFailed(f"the ID token is not valid: {exc}") from None
    if not secrets.compare_digest(str(claims.get("nonce", "")), pending.nonce):
        raise OAuthFailed("the ID token's nonce does not match this sign-in")
    email, verified = claims.get("email"), claims.get("email_verified")
    picture = claims.get("picture")
    if email is None and (userinfo_url := document.get("userinfo_endpoint")) and tokens.get("access_token"):
        info = await _get_json(http, userinfo_url, tokens["access_token"])
        if str(info.get("sub")) == str(claims["sub"]):
            email, verified = info.get("email"), info.get("email_verified")
            picture = picture or info.get("picture")
    return Profile(
        subject=str(claims["sub"]),
        email=str(email).lower() if email else None,
        email_verified=verified is True or verified == "true",
        name=claims.get("name"),
        picture=_picture(picture),
    )


async def _get_json(http: httpx.AsyncClient, url: str, access_token: str) -> dict[str, object]:
    try:
        response = await http.get(
            url, headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        )
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise OAuthFailed(f"the sign-in provider's API did not answer: {exc}") from None
    return body if isinstance(body, dict) else {"items": body}


async def _github_profile(
    http: httpx.AsyncClient, client: OAuthClient, code: str, pending: Pending
) -> Profile:
    tokens = await _post_token(http, f"{client.issuer}/login/oauth/access_token", client, code, pending)
    access = tokens.get("access_token")
    if not access:
        raise OAuthFailed("GitHub sent no access token")
    api = client.api_url or "https://api.github.com"
    user = await _get_json(http, f"{api}/user", access)
    emails = (await _get_json(http, f"{api}/user/emails", access)).get("items")
    listed = emails if isinstance(emails, list) else []
    primary = next(
        (e for e in listed if isinstance(e, dict) and e.get("primary") and e.get("verified")), None
    )
    return Profile(
        subject=str(user["id"]),
        email=str(primary["email"]).lower() if primary else None,
        email_verified=primary is not None,
        name=str(user.get("name") or user.get("login") or "") or None,
        picture=_picture(user.get("avatar_url")),
    )


async def user_for(db: AsyncSession, provider_id: str, profile: Profile, *, may_create: bool) -> User:
    """The account a provider's user signs in to: the linked one, else the one with their verified
    email (linked now), else a new one (when registration is open)."""
    found = await db.execute(
        select(User)
        .join(OAuthIdentity, OAuthIdentity.user_id == User.id)
        .where(OAuthIdentity.provider == provider_id, OAuthIdentity.subject == profile.subject)
    )
    if (user := found.scalar_one_or_none()) is not None:
        if _fill_profile(user, profile):
            await db.commit()
        return user
    if not profile.email or not profile.email_verified:
        raise InvalidInput("the sign-in provider did not confirm an email address for this account")
    user = (await db.execute(select(User).where(User.email == profile.email))).scalar_one_or_none()
    if user is not None and not user.email_verified:
        await _take_back(db, user)
    if user is None:
        if not may_create:
            raise Forbidden("registration is closed on this server")
        user = User(
            email=profile.email,
            name=profile.name[:200] if profile.name else None,
            avatar_url=profile.picture,
            role="user",
            email_verified=True,
        )
        db.add(user)
        await db.flush()
    else:
        _fill_profile(user, profile)
    db.add(OAuthIdentity(user_id=user.id, provider=provider_id, subject=profile.subject, email=profile.email))
    try:
        await db.commit()
    except IntegrityError:  # the same first sign-in finished twice at once: the other one won
        await db.rollback()
        return await user_for(db, provider_id, profile, may_create=False)
    return user


def _fill_profile(user: User, profile: Profile) -> bool:
    """Fills the name and avatar the account lacks from the provider's profile (never overwrites
    what is there); whether anything changed."""
    changed = False
    if user.avatar_url is None and profile.picture:
        user.avatar_url, changed = profile.picture, True
    if user.name is None and profile.name:
        user.name, changed = profile.name[:200], True
    return changed


async def _take_back(db: AsyncSession, user: User) -> None:
    """The provider proved this email; the account's password never did. Whoever registered it may
    not be its owner (account pre-hijacking), so what they could have kept goes: the password, every
    sign-in and every API key."""
    user.password_hash = None
    user.email_verified = True
    await auth.revoke_everything(db, user.id)
