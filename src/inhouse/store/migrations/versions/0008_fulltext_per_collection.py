"""knowledge full text on SQLite: one FTS5 table per collection instead of one for all

bm25 ranks with its table's statistics (row count, average length, each word's document
frequency), so in one table for all collections a collection the reader may not read changed
the order of what the reader finds. Each collection's table is `knowledge_fts_<id>`, filled
from its chunks; PostgreSQL ranks with ts_rank_cd, which uses no such statistics: no change.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BATCH = 2000
# as migration 0002 created knowledge_fts: no copy of the text, deletable by rowid, stemmed
OPTIONS = (
    "fts5(text, content='', contentless_delete=1, tokenize='porter unicode61 remove_diacritics 2')"
)
CHUNKS = sa.table(
    "knowledge_chunks",
    sa.column("id", sa.Integer),
    sa.column("collection_id", sa.Integer),
    sa.column("text", sa.Text),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for collection_id in _collections():
        table = f"knowledge_fts_{collection_id}"
        op.execute(f"CREATE VIRTUAL TABLE {table} USING {OPTIONS}")
        _copy(table, CHUNKS.c.collection_id == collection_id)
    op.execute("DROP TABLE knowledge_fts")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(f"CREATE VIRTUAL TABLE knowledge_fts USING {OPTIONS}")
    _copy("knowledge_fts", sa.true())
    for collection_id in _collections():
        op.execute(f"DROP TABLE IF EXISTS knowledge_fts_{collection_id}")


def _collections() -> list[int]:
    query = sa.text("SELECT id FROM knowledge_collections ORDER BY id")
    return [int(i) for i in op.get_bind().scalars(query)]


def _copy(table: str, where: sa.ColumnElement[bool]) -> None:
    """Full-text rows (rowid = chunk id) for the chunks `where` selects, in batches."""
    connection = op.get_bind()
    insert = sa.text(f"INSERT INTO {table} (rowid, text) VALUES (:id, :text)")
    after = -1
    while True:
        rows = connection.execute(
            sa.select(CHUNKS.c.id, CHUNKS.c.text)
            .where(where, CHUNKS.c.id > after)
            .order_by(CHUNKS.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(insert, [{"id": r.id, "text": r.text} for r in rows])
        after = rows[-1].id
