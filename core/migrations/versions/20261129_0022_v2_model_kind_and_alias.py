"""models for the /v2 API (issue 15): a kind, and a custom model's alias

`kind` says what a model does: `chat` (every model so far) or `embedding` (the /v2 embeddings,
knowledge bases and semantic judges). `alias` is a /v2 custom model's name (`/v2/models/custom`):
a name its owner calls it by, unique among the owner's models (the service keeps it so: the owner
is the provider's).

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-29 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('llm_models', sa.Column('kind', sa.String(length=20), server_default='chat', nullable=False))
    op.create_check_constraint(op.f('ck_llm_models_kind'), 'llm_models', "kind IN ('chat', 'embedding')")
    op.add_column('llm_models', sa.Column('alias', sa.String(length=200), nullable=True))
    op.create_index(
        'ix_llm_models_alias', 'llm_models', ['alias'], unique=False, postgresql_where=sa.text('alias IS NOT NULL')
    )


def downgrade() -> None:
    op.drop_index('ix_llm_models_alias', table_name='llm_models', postgresql_where=sa.text('alias IS NOT NULL'))
    op.drop_column('llm_models', 'alias')
    op.drop_constraint(op.f('ck_llm_models_kind'), 'llm_models', type_='check')
    op.drop_column('llm_models', 'kind')
