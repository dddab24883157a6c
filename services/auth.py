"""Credentials: Argon2id passwords, sign-in sessions with HS256 access tokens and rotating refresh
tokens, `evr_` API keys. Refresh tokens and API keys are stored as SHA-256, never in the clear.

A sign-in (password or OAuth) opens an `AuthSession`: the family of its refresh tokens. Each refresh
spends the presented token and hands out the next; presenting a spent one again means it was stolen,
so the whole family is revoked. Access tokens name their session (`sid`), so logout or a revoked
family ends them at once, not when they expire."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import ApiKey, AuthSession, OAuthIdentity, RefreshToken, User
from core.errors import Conflict, InvalidInput, NotFound
from core.identity import BUILTIN_ADMIN_EMAIL, BUILTIN_ADMIN_ID
from core.ids import uuid7

ACCESS_TTL = timedelta(minutes=15)
REFRESH_TTL = timedelta(days=30)
API_KEY_PREFIX = "evr_"
API_KEY_SHAPE = re.compile(r"^evr_[0-9a-f]{64}$")  # what create_api_key makes, and nothing else
LAST_USED_EVERY = timedelta(minutes=1)
# The scopes a key may be given. A key acts with all of its owner's access ("*", Everruns' default):
# Everloop has nothing narrower to enforce, and a key that said "read" but could write would mislead
# whoever made it, so any other scope is refused rather than stored.
SCOPES = frozenset({"*"})
DEFAULT_SCOPES = ["*"]

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


class Tokens(msgspec.Struct, kw_only=True, frozen=True):
    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives


@dataclass(frozen=True, kw_only=True)
class Authenticated:
    user: User
    method: str  # token | api_key
    expires_at: datetime | None
    key_id: uuid.UUID | None = None  # the API key's (its own rate-limit bucket)


def issue_access_token(
    user: User, secret: str, session_id: uuid.UUID | None = None, now: datetime | None = None
) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "role": user.role,
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + ACCESS_TTL).timestamp()),
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    return jwt.encode(claims, secret, algorithm="HS256")


def _access_claims(token: str, secret: str) -> tuple[uuid.UUID, uuid.UUID | None, datetime] | None:
    """(user id, sign-in session id, expiry) of a valid access token, else None."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]})
        if claims.get("typ") != "access":
            return None
        sid = claims.get("sid")
        return (
            uuid.UUID(str(claims["sub"])),
            uuid.UUID(str(sid)) if sid else None,
            datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(db: AsyncSession, credential: str, secret: str) -> Authenticated | None:
    """Who a bearer credential (API key or access token) stands for and until when, or None."""
    if credential.startswith(API_KEY_PREFIX):
        key = (
            await db.execute(select(ApiKey).where(ApiKey.key_hash == _key_hash(credential)))
        ).scalar_one_or_none()
        now = datetime.now(UTC)
        if key is None or (key.expires_at is not None and key.expires_at <= now):
            return None
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_EVERY:
            # At most one write a minute per key, not one per request.
            await db.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
            await db.commit()
        user = await db.get(User, key.user_id)
        return (
            Authenticated(user=user, method="api_key", expires_at=key.expires_at, key_id=key.id)
            if user
            else None
        )
    claims = _access_claims(credential, secret)
    if claims is None:
        return None
    user_id, session_id, expires_at = claims
    user = await db.get(User, user_id)
    if user is None:
        return None
    if session_id is not None and not await _session_live(db, session_id, user_id):
        return None
    return Authenticated(user=user, method="token", expires_at=expires_at)


def looks_like_api_key(credential: str) -> bool:
    """Whether a string has the exact shape of an Everloop API key (`evr_` and 64 hex digits)."""
    return API_KEY_SHAPE.fullmatch(credential) is not None


async def still_valid(db: AsyncSession, credential: str, secret: str) -> bool:
    """Whether a credential that authenticated a long request (an SSE stream) still would."""
    return await authenticate(db, credential, secret) is not None


async def _session_live(db: AsyncSession, session_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    row = await db.get(AuthSession, session_id)
    now = datetime.now(UTC)
    return row is not None and row.user_id == user_id and row.revoked_at is None and row.expires_at > now


# Sign-in sessions and refresh tokens


def _new_refresh(session: AuthSession) -> tuple[RefreshToken, str]:
    token = secrets.token_urlsafe(32)
    row = RefreshToken(auth_session_id=session.id, token_hash=_key_hash(token), expires_at=session.expires_at)
    return row, token


async def sign_in(db: AsyncSession, user: User, method: str, secret: str) -> Tokens:
    """Opens a sign-in session for a user who proved who they are; returns its first tokens."""
    now = datetime.now(UTC)
    session = AuthSession(id=uuid7(), user_id=user.id, method=method, expires_at=now + REFRESH_TTL)
    refresh, token = _new_refresh(session)
    db.add_all([session, refresh])
    await db.commit()
    return Tokens(
        access_token=issue_access_token(user, secret, session.id, now),
        refresh_token=token,
        expires_in=int(ACCESS_TTL.total_seconds()),
    )


async def refresh(db: AsyncSession, token: str, secret: str) -> Tokens | None:
    """Spends a refresh token for a new pair. A spent token presented again revokes its family."""
    now = datetime.now(UTC)
    found = await db.execute(
        select(RefreshToken).where(RefreshToken.token_hash == _key_hash(token)).with_for_update()
    )
    row = found.scalar_one_or_none()
    if row is None:
        return None
    session = await db.get(AuthSession, row.auth_session_id, with_for_update=True)
    if session is None or session.revoked_at is not None or session.expires_at <= now:
        return None
    if row.used_at is not None:
        session.revoked_at = now  # reuse: someone holds a copy, so nobody keeps this family
        await db.commit()
        return None
    user = await db.get(User, session.user_id)
    if user is None:
        return None
    row.used_at = now
    following, new_token = _new_refresh(session)
    db.add(following)
    await db.commit()
    return Tokens(
        access_token=issue_access_token(user, secret, session.id, now),
        refresh_token=new_token,
        expires_in=int(ACCESS_TTL.total_seconds()),
    )


async def sign_out(
    db: AsyncSession, secret: str, *, refresh_token: str | None, access_token: str | None
) -> bool:
    """Revokes the sign-in session either token belongs to; False when neither names one."""
    session_ids: set[uuid.UUID] = set()
    if refresh_token:
        found = await db.execute(
            select(RefreshToken.auth_session_id).where(RefreshToken.token_hash == _key_hash(refresh_token))
        )
        if (sid := found.scalar_one_or_none()) is not None:
            session_ids.add(sid)
    if access_token and (claims := _access_claims(access_token, secret)) and claims[1] is not None:
        session_ids.add(claims[1])
    if not session_ids:
        return False
    await db.execute(
        update(AuthSession)
        .where(AuthSession.id.in_(session_ids), AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await db.commit()
    return True


# Accounts


async def register(db: AsyncSession, email: str, password: str, name: str | None = None) -> User:
    """A new `user` account; Conflict when the email has one already. A blank name is no name."""
    email = email.strip().lower()
    if (await db.execute(select(User.id).where(User.email == email))).first() is not None:
        raise Conflict("an account with this email exists")
    user = User(
        email=email, name=(name or "").strip() or None, role="user", password_hash=hash_password(password)
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError:  # the same email registered concurrently
        await db.rollback()
        raise Conflict("an account with this email exists") from None
    return user


async def ensure_admin(db: AsyncSession, email: str, password: str) -> User:
    """The ADMIN_EMAIL account, created or brought in line with the environment. An account that
    becomes admin here, or whose password the environment changes, loses every sign-in and API key
    it had: whoever registered that email early, or learnt the old password, keeps nothing."""
    user = (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        user = User(email=email, role="admin", password_hash=hash_password(password), email_verified=True)
        db.add(user)
    elif user.role != "admin" or not verify_password(user.password_hash, password):
        user.role = "admin"
        user.email_verified = True
        user.password_hash = hash_password(password)
        await revoke_everything(db, user.id)
        # Nor any OAuth link made before: the environment's password is the admin's way in.
        await db.execute(delete(OAuthIdentity).where(OAuthIdentity.user_id == user.id))
    await db.commit()
    return user


async def revoke_everything(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Ends every sign-in of a user and deletes their API keys (the caller commits)."""
    await db.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await db.execute(delete(ApiKey).where(ApiKey.user_id == user_id))


async def ensure_builtin_admin(db: AsyncSession) -> None:
    if await db.get(User, BUILTIN_ADMIN_ID) is None:
        db.add(User(id=BUILTIN_ADMIN_ID, email=BUILTIN_ADMIN_EMAIL, role="admin", email_verified=True))
        await db.commit()


async def login(db: AsyncSession, email: str, password: str) -> User | None:
    user = (await db.execute(select(User).where(User.email == email.lower()))).scalar_one_or_none()
    if user is None:
        verify_password(_DUMMY_HASH, password)  # same work either way: no timing hint that the email exists
        return None
    return user if verify_password(user.password_hash, password) else None


async def create_api_key(
    db: AsyncSession,
    user_id: uuid.UUID,
    name: str,
    expires_in_days: int | None,
    scopes: list[str] | None = None,
) -> tuple[ApiKey, str]:
    granted = sorted(set(scopes)) if scopes else DEFAULT_SCOPES
    if refused := [s for s in granted if s not in SCOPES]:
        raise InvalidInput(
            f"unsupported API key scope {refused[0]!r}: a key acts with all of its owner's access, "
            'so the only scope is "*" (leave scopes out for it)',
            field="scopes",
        )
    key = API_KEY_PREFIX + secrets.token_hex(32)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiKey(
        user_id=user_id,
        name=name,
        prefix=key[:12],
        key_hash=_key_hash(key),
        expires_at=expires,
        scopes=list(granted),
    )
    db.add(row)
    await db.commit()
    return row, key


async def list_api_keys(db: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id.desc())
    return list((await db.execute(query)).scalars())


async def delete_api_key(db: AsyncSession, user_id: uuid.UUID, key_id: uuid.UUID) -> None:
    row = await db.get(ApiKey, key_id)
    if row is None or row.user_id != user_id:  # another user's key: as if it did not exist
        raise NotFound(f"API key {key_id} not found")
    await db.delete(row)
    await db.commit()


def scopes_of(key: ApiKey) -> list[str]:
    """A key's scopes; keys made before scopes existed have none stored and full access: ["*"]."""
    return list(key.scopes) or list(DEFAULT_SCOPES)


# Users


def display_name(user: User) -> str:
    """What to call a user: their name, else the part of their email before the @ (Everruns' clients
    expect a name on every user)."""
    return user.name or user.email.split("@", 1)[0]


async def get_user(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await db.get(User, user_id)


async def list_users(
    db: AsyncSession, *, offset: int, limit: int, search: str | None = None
) -> tuple[list[tuple[User, str | None]], int]:
    """The accounts on this server, oldest first, each with how it signs in (an OAuth provider,
    else "password", else None), and how many match. `search`: a substring of the email or name."""
    query = select(User)
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(or_(User.email.ilike(pattern), User.name.ilike(pattern)))
    total = (await db.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    users = list((await db.execute(query.order_by(User.id).offset(offset).limit(limit))).scalars())
    linked = await db.execute(
        select(OAuthIdentity.user_id, func.min(OAuthIdentity.provider))
        .where(OAuthIdentity.user_id.in_([u.id for u in users]))
        .group_by(OAuthIdentity.user_id)
    )
    providers = {user_id: provider for user_id, provider in linked.all()}
    found = [(u, providers.get(u.id) or ("password" if u.password_hash else None)) for u in users]
    return found, int(total)


_DUMMY_HASH = _hasher.hash("not a password anyone has")
