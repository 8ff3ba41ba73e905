"""knowledge: collections, documents, chunks, vectors and their full-text index

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# FTS5 without a copy of the text (the chunks table holds it); contentless_delete lets a row
# be deleted by rowid. Porter stemming so "terminated" finds "termination".
SQLITE_FTS = (
    "CREATE VIRTUAL TABLE knowledge_fts USING fts5(text, content='', contentless_delete=1, "
    "tokenize='porter unicode61 remove_diacritics 2')"
)
POSTGRES_FTS = (
    "CREATE TABLE knowledge_fts ("
    "chunk_id INTEGER PRIMARY KEY REFERENCES knowledge_chunks (id) ON DELETE CASCADE, "
    "collection_id INTEGER NOT NULL, tsv TSVECTOR NOT NULL)",
    "CREATE INDEX knowledge_fts_tsv ON knowledge_fts USING GIN (tsv)",
    "CREATE INDEX knowledge_fts_collection ON knowledge_fts (collection_id)",
)


def upgrade() -> None:
    op.create_table(
        "knowledge_collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner_group_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_group_id"],
            ["groups.id"],
            name=op.f("fk_knowledge_collections_owner_group_id_groups"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_collections")),
        sa.UniqueConstraint("name", name=op.f("uq_knowledge_collections_name")),
    )
    op.create_table(
        "knowledge_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["knowledge_collections.id"],
            name=op.f("fk_knowledge_documents_collection_id_knowledge_collections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_documents")),
        sa.UniqueConstraint(
            "collection_id", "source", name=op.f("uq_knowledge_documents_collection_id")
        ),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("location", sa.JSON(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["knowledge_documents.id"],
            name=op.f("fk_knowledge_chunks_document_id_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_chunks")),
        sa.UniqueConstraint("document_id", "ordinal", name=op.f("uq_knowledge_chunks_document_id")),
    )
    op.create_index(
        op.f("ix_knowledge_chunks_collection_id"), "knowledge_chunks", ["collection_id"]
    )
    op.create_table(
        "knowledge_vectors",
        sa.Column("chunk_id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chunk_id"],
            ["knowledge_chunks.id"],
            name=op.f("fk_knowledge_vectors_chunk_id_knowledge_chunks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chunk_id", name=op.f("pk_knowledge_vectors")),
    )
    op.create_index(
        op.f("ix_knowledge_vectors_collection_id"), "knowledge_vectors", ["collection_id"]
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(SQLITE_FTS)
    else:
        for statement in POSTGRES_FTS:
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE knowledge_fts")
    op.drop_index(op.f("ix_knowledge_vectors_collection_id"), table_name="knowledge_vectors")
    op.drop_table("knowledge_vectors")
    op.drop_index(op.f("ix_knowledge_chunks_collection_id"), table_name="knowledge_chunks")
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_documents")
    op.drop_table("knowledge_collections")
