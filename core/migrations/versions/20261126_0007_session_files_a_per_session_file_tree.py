"""session files: a per-session file tree (capability session_file_system and the /fs routes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 01:42:07.176666
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "session_files",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("path", sa.Text(collation="C"), nullable=False),
        sa.Column("parent", sa.Text(collation="C"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(kind = 'file') = (content IS NOT NULL)", name=op.f("ck_session_files_content_only_in_files")
        ),
        sa.CheckConstraint("kind IN ('file', 'directory')", name=op.f("ck_session_files_kind")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_session_files_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "path", name=op.f("pk_session_files")),
    )
    op.create_index(
        "ix_session_files_session_id_parent", "session_files", ["session_id", "parent"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_session_files_session_id_parent", table_name="session_files")
    op.drop_table("session_files")
