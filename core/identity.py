"""Who is calling: the one value every owned resource is checked against."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

# The one user of AUTH_MODE=none (and the owner of what it creates).
BUILTIN_ADMIN_ID = uuid.UUID("00000000-0000-7000-8000-000000000001")
BUILTIN_ADMIN_EMAIL = "admin@localhost"


class Identity(msgspec.Struct, kw_only=True, frozen=True):
    """Who is calling, how they proved it, and until when the proof holds (None: no expiry)."""

    user_id: uuid.UUID
    email: str
    role: str  # admin | user
    method: str  # none | token | cookie | api_key | project_key
    expires_at: datetime | None = None
    # A project key (`vgl_`) proves only this: its project's trace routes (api/security.py).
    project_id: uuid.UUID | None = None
    # The API key's or project key's own id (None for a token or cookie: the user is the caller). A
    # key is its own rate-limit bucket and may carry its own limits (services/rate_limits.py).
    credential_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


BUILTIN_ADMIN = Identity(user_id=BUILTIN_ADMIN_ID, email=BUILTIN_ADMIN_EMAIL, role="admin", method="none")
