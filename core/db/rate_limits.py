"""An admin's rate limit for one user or one credential: a plan, or (enterprise) its own figures.

One row per subject, exactly one of `user_id`, `api_key_id`, `project_key_id` set (a user's row is
the plan of every credential of theirs; a key's row overrides it for that key). Each subject column
cascades, so a deleted key takes its override with it.
"""

from __future__ import annotations

import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.base import TimestampedModel


class RateLimit(TimestampedModel):
    __tablename__ = "rate_limits"
    __table_args__ = (
        CheckConstraint("num_nonnulls(user_id, api_key_id, project_key_id) = 1", name="one_subject"),
        # Figures only with the custom plan, and then both (services/rate_limits.py says why).
        CheckConstraint(
            "(plan = 'enterprise') = (per_minute IS NOT NULL AND burst IS NOT NULL)"
            " AND (per_minute IS NULL) = (burst IS NULL)",
            name="figures_with_enterprise",
        ),
    )

    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), unique=True)
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), unique=True
    )
    project_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("project_keys.id", ondelete="CASCADE"), unique=True
    )
    plan: Mapped[str] = mapped_column(String(20))  # free | pro | teams | enterprise
    per_minute: Mapped[int | None] = mapped_column(Integer)
    burst: Mapped[int | None] = mapped_column(Integer)
