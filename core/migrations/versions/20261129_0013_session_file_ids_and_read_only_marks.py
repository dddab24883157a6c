"""session files: an id per entry and a read-only mark (issue 12, Everruns' file contract)

Everruns' clients show each file's `id` and `is_readonly`. Existing rows get an id each (a volatile
default is evaluated per row) and are writable.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "session_files",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
    )
    op.add_column(
        "session_files",
        sa.Column("is_readonly", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_unique_constraint(op.f("uq_session_files_id"), "session_files", ["id"])


def downgrade() -> None:
    op.drop_constraint(op.f("uq_session_files_id"), "session_files", type_="unique")
    op.drop_column("session_files", "is_readonly")
    op.drop_column("session_files", "id")
