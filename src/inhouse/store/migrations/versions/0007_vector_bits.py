"""knowledge vectors: sign bits for the coarse pass of vector search, with a covering index

Revision ID: 0007
Revises: 0006
"""

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BATCH = 2000


def upgrade() -> None:
    op.add_column("knowledge_vectors", sa.Column("bits", sa.LargeBinary(), nullable=True))
    op.create_index(
        "ix_knowledge_vectors_collection_bits",
        "knowledge_vectors",
        ["collection_id", "bits"],
        unique=False,
    )
    connection = op.get_bind()
    vectors = sa.table(
        "knowledge_vectors",
        sa.column("chunk_id", sa.Integer),
        sa.column("embedding", sa.LargeBinary),
        sa.column("bits", sa.LargeBinary),
    )
    after = -1
    while True:  # the vectors indexed before this revision get their bits, in batches
        rows = connection.execute(
            sa.select(vectors.c.chunk_id, vectors.c.embedding)
            .where(vectors.c.chunk_id > after)
            .order_by(vectors.c.chunk_id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            vectors.update()
            .where(vectors.c.chunk_id == sa.bindparam("id"))
            .values(bits=sa.bindparam("b")),
            [
                {
                    "id": r.chunk_id,
                    "b": np.packbits(np.frombuffer(r.embedding, "<f4") > 0).tobytes(),
                }
                for r in rows
            ],
        )
        after = rows[-1].chunk_id


def downgrade() -> None:
    op.drop_index("ix_knowledge_vectors_collection_bits", table_name="knowledge_vectors")
    op.drop_column("knowledge_vectors", "bits")
