"""Credentials: Argon2id passwords, HS256 access tokens, `evr_` API keys stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.db.models import ApiKey, User
from core.errors import NotFound
from core.identity import BUILTIN_ADMIN_EMAIL, BUILTIN_ADMIN_ID

ACCESS_TTL = timedelta(minutes=15)
API_KEY_PREFIX = "evr_"
LAST_USED_EVERY = timedelta(minutes=1)

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


def issue_access_token(user: User, secret: str, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(user.id),
        "role": user.role,
        "typ": "access",
        "iat": int(now.timestamp()),
        "exp": int((now + ACCESS_TTL).timestamp()),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _token_user_id(token: str, secret: str) -> uuid.UUID | None:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]})
        if claims.get("typ") != "access":
            return None
        return uuid.UUID(str(claims["sub"]))
    except (jwt.PyJWTError, ValueError):
        return None


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def authenticate(db: AsyncSession, credential: str, secret: str) -> User | None:
    """The user a bearer credential (API key or access token) stands for, or None."""
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
        return await db.get(User, key.user_id)
    user_id = _token_user_id(credential, secret)
    return await db.get(User, user_id) if user_id else None


async def ensure_admin(db: AsyncSession, email: str, password: str) -> User:
    """The AUTH_MODE=admin account, created or brought in line with the environment."""
    user = (await db.execute(select(User).where(User.email == email))).scalar_one_or_none()
    if user is None:
        user = User(email=email, role="admin", password_hash=hash_password(password), email_verified=True)
        db.add(user)
    else:
        user.role = "admin"
        if not verify_password(user.password_hash, password):
            user.password_hash = hash_password(password)
    await db.commit()
    return user


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
    db: AsyncSession, user_id: uuid.UUID, name: str, expires_in_days: int | None
) -> tuple[ApiKey, str]:
    key = API_KEY_PREFIX + secrets.token_hex(32)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    row = ApiKey(user_id=user_id, name=name, prefix=key[:12], key_hash=_key_hash(key), expires_at=expires)
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


_DUMMY_HASH = _hasher.hash("not a password anyone has")
