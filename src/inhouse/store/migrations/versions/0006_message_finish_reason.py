"""conversation messages: how each answer ended (stop, length, stopped by its reader, error)

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("conversation_messages") as table:
        table.add_column(sa.Column("finish_reason", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversation_messages") as table:
        table.drop_column("finish_reason")
