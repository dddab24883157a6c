"""fields Everruns' own clients send and read (issue 12)

Agents and sessions keep what the web UI and the SDK send (client-side tools, initial files,
display name, parallel tool calls, locale, session capabilities); sessions record when their first
turn started and their last one finished; users an avatar; API keys their scopes. Tool messages are
named `tool_result`, as Everruns names them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EMPTY_LIST = sa.text("'[]'::jsonb")


def upgrade() -> None:
    op.add_column('agents', sa.Column('display_name', sa.Text(), nullable=True))
    op.add_column('agents', sa.Column('tools', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False))
    op.add_column('agents', sa.Column('initial_files', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False))
    op.add_column('agents', sa.Column('parallel_tool_calls', sa.Boolean(), nullable=True))
    op.add_column('sessions', sa.Column('tools', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False))
    op.add_column('sessions', sa.Column('capabilities', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False))
    op.add_column('sessions', sa.Column('locale', sa.Text(), nullable=True))
    op.add_column('sessions', sa.Column('parallel_tool_calls', sa.Boolean(), nullable=True))
    op.add_column('sessions', sa.Column('started_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sessions', sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('users', sa.Column('avatar_url', sa.Text(), nullable=True))
    op.add_column('api_keys', sa.Column('scopes', postgresql.JSONB(astext_type=sa.Text()), server_default=EMPTY_LIST, nullable=False))
    op.execute("UPDATE messages SET role = 'tool_result' WHERE role = 'tool'")


def downgrade() -> None:
    op.execute("UPDATE messages SET role = 'tool' WHERE role = 'tool_result'")
    op.drop_column('api_keys', 'scopes')
    op.drop_column('users', 'avatar_url')
    for column in ('finished_at', 'started_at', 'parallel_tool_calls', 'locale', 'capabilities', 'tools'):
        op.drop_column('sessions', column)
    for column in ('parallel_tool_calls', 'initial_files', 'tools', 'display_name'):
        op.drop_column('agents', column)
