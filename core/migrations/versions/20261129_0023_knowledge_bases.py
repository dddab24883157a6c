"""knowledge bases for the /v2 API (issue 15): bases, documents, chunks with pgvector embeddings,
uploaded files

Vectors are pgvector's `vector` without a fixed dimension: each base's embedding model decides its
dimension (the simulator's 256, OpenAI's 1536 or 3072), so one plain column cannot carry one HNSW
index. Each base gets its own partial expression index when it is created (services/knowledge.py
`create_base`): `USING hnsw ((embedding::vector(N)) vector_cosine_ops) WHERE knowledge_base_id =
'<id>'`, which its queries match literally. Those indexes are not in the models: Alembic's
autogenerate lists them as indexes to drop (ignore every `ix_knowledge_chunks_hnsw_*`).

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-29 22:30:00
"""

from collections.abc import Sequence

import pgvector.sqlalchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0023'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute('CREATE EXTENSION IF NOT EXISTS vector')
    op.create_table(
        'knowledge_bases',
        sa.Column('owner_id', sa.Uuid(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('description', sa.Text(), nullable=True),
        sa.Column('embedding_model_id', sa.Uuid(), nullable=True),
        sa.Column('embedding_model', sa.String(length=400), nullable=False),
        sa.Column('dimensions', sa.Integer(), nullable=False),
        sa.Column('chunk_size', sa.Integer(), nullable=False),
        sa.Column('chunk_overlap', sa.Integer(), nullable=False),
        sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(
            ['owner_id'], ['users.id'], name=op.f('fk_knowledge_bases_owner_id_users'), ondelete='CASCADE'
        ),
        sa.ForeignKeyConstraint(
            ['embedding_model_id'],
            ['llm_models.id'],
            name=op.f('fk_knowledge_bases_embedding_model_id_llm_models'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_bases')),
    )
    op.create_index(
        'uq_knowledge_bases_owner_name',
        'knowledge_bases',
        ['owner_id', 'name'],
        unique=True,
        postgresql_where=sa.text('deleted_at IS NULL'),
    )
    op.create_table(
        'knowledge_files',
        sa.Column('knowledge_base_id', sa.Uuid(), nullable=False),
        sa.Column('original_filename', sa.String(length=1000), nullable=False),
        sa.Column('content_type', sa.String(length=200), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=True),
        sa.Column('upload_token_hash', sa.String(length=64), nullable=True),
        sa.Column('upload_expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending_upload', 'uploaded', 'processed', 'failed')", name=op.f('ck_knowledge_files_status')
        ),
        sa.ForeignKeyConstraint(
            ['knowledge_base_id'],
            ['knowledge_bases.id'],
            name=op.f('fk_knowledge_files_knowledge_base_id_knowledge_bases'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_files')),
    )
    op.create_index('ix_knowledge_files_knowledge_base_id', 'knowledge_files', ['knowledge_base_id'])
    op.create_table(
        'knowledge_documents',
        sa.Column('knowledge_base_id', sa.Uuid(), nullable=False),
        sa.Column('number', sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column('key', sa.String(length=1000), nullable=False),
        sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('file_id', sa.Uuid(), nullable=True),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(
            ['knowledge_base_id'],
            ['knowledge_bases.id'],
            name=op.f('fk_knowledge_documents_knowledge_base_id_knowledge_bases'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['file_id'],
            ['knowledge_files.id'],
            name=op.f('fk_knowledge_documents_file_id_knowledge_files'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_documents')),
        sa.UniqueConstraint('knowledge_base_id', 'key', name=op.f('uq_knowledge_documents_knowledge_base_id_key')),
    )
    op.create_index('ix_knowledge_documents_file_id', 'knowledge_documents', ['file_id'])
    op.create_table(
        'knowledge_chunks',
        sa.Column('knowledge_base_id', sa.Uuid(), nullable=False),
        sa.Column('document_id', sa.Uuid(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('content', sa.Text(), nullable=False),
        sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column('embedding', pgvector.sqlalchemy.Vector(), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.ForeignKeyConstraint(
            ['document_id'],
            ['knowledge_documents.id'],
            name=op.f('fk_knowledge_chunks_document_id_knowledge_documents'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['knowledge_base_id'],
            ['knowledge_bases.id'],
            name=op.f('fk_knowledge_chunks_knowledge_base_id_knowledge_bases'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_knowledge_chunks')),
    )
    op.create_index('ix_knowledge_chunks_document_id', 'knowledge_chunks', ['document_id'])
    op.create_index('ix_knowledge_chunks_knowledge_base_id', 'knowledge_chunks', ['knowledge_base_id'])


def downgrade() -> None:
    op.drop_table('knowledge_chunks')  # with every base's HNSW index on it
    op.drop_table('knowledge_documents')
    op.drop_table('knowledge_files')
    op.drop_table('knowledge_bases')
