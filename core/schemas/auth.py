"""Auth on the wire: `/api/auth/...` and `/v1/auth/...` (the same routes under both prefixes), and the
member list `/v1/users`.

Shapes follow Everruns' web UI where it reads them (`AuthConfigResponse`, `UserInfoResponse`,
`ApiKeyListItem`, `User`); the seed's fields stay beside the newer ones (`registration_open` beside
`signup_enabled`, `role` beside `roles`, `prefix` beside `key_prefix`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

# Only "*" is granted (services/auth.SCOPES says why); others are refused with a 400 that says so.
ApiKeyScope = Annotated[
    str, Meta(min_length=1, max_length=100, description='"*": all of the owner\'s access (the only scope)')
]
UserName = Annotated[str, Meta(max_length=200, description="display name (blank: none)")]


class AuthConfig(msgspec.Struct, kw_only=True):
    mode: str  # none | admin | full
    registration_open: bool  # the seed's name for signup_enabled
    oauth_providers: list[str]
    password_auth_enabled: bool  # whether POST login takes an email and password here
    signup_enabled: bool  # whether POST register (or a first OAuth sign-in) may open an account


class Login(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class Register(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    email: Annotated[str, Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    password: Annotated[str, Meta(min_length=8, max_length=1024)]
    name: UserName | None = None  # Everruns' UI sends one; the seed's clients do not


class RefreshRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    refresh_token: str | None = None  # else the `refresh_token` cookie


class TokenPair(msgspec.Struct, kw_only=True):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class LoggedOut(msgspec.Struct, kw_only=True):
    status: str


class Me(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    email: str
    name: str  # the account's name, else the part of the email before the @
    role: str  # admin | user
    roles: list[str]  # [role], as Everruns lists them
    avatar_url: str | None
    auth_mode: str
    authenticated_by: str  # none | token | cookie | api_key


class CreateApiKey(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    expires_in_days: Annotated[int, Meta(ge=1, le=3650)] | None = None
    # Absent or empty: ["*"], as in Everruns. Anything but "*" is refused (services/auth.SCOPES).
    scopes: Annotated[list[ApiKeyScope], Meta(max_length=20)] | None = None


class ApiKeyInfo(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    name: str
    prefix: str  # "evr_" and the key's first 8 hex digits (the seed's field)
    key_prefix: str  # the same followed by "...", as Everruns shows it
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class NewApiKey(ApiKeyInfo, kw_only=True):
    key: str  # shown once


class UserInfo(msgspec.Struct, kw_only=True):
    """A member of this server, as an admin's member list shows them."""

    id: uuid.UUID
    email: str
    name: str  # as in Me
    avatar_url: str | None
    roles: list[str]
    auth_provider: str | None  # google | github | oidc | password; None: no way to sign in yet
    created_at: datetime
