"""rate limits (issue 16): an admin's plan or own figures for a user, an API key or a project key

One row per subject (exactly one of the three subject columns, each unique and cascading with what
it names). Buckets themselves live in Redis (core/rate_limit.py); this table holds only what an
admin set. Without a row a credential has the RATE_LIMIT_PLAN of settings.

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30 00:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("project_key_id", sa.Uuid(), nullable=True),
        sa.Column("plan", sa.String(length=20), nullable=False),
        sa.Column("per_minute", sa.Integer(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "num_nonnulls(user_id, api_key_id, project_key_id) = 1",
            name=op.f("ck_rate_limits_one_subject"),
        ),
        sa.CheckConstraint(
            "(plan = 'enterprise') = (per_minute IS NOT NULL AND burst IS NOT NULL)"
            " AND (per_minute IS NULL) = (burst IS NULL)",
            name=op.f("ck_rate_limits_figures_with_enterprise"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_rate_limits_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_rate_limits_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["project_key_id"],
            ["project_keys.id"],
            name=op.f("fk_rate_limits_project_key_id_project_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_limits")),
        sa.UniqueConstraint("user_id", name=op.f("uq_rate_limits_user_id")),
        sa.UniqueConstraint("api_key_id", name=op.f("uq_rate_limits_api_key_id")),
        sa.UniqueConstraint("project_key_id", name=op.f("uq_rate_limits_project_key_id")),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
