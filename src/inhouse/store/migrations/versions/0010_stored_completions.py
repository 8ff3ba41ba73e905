"""stored completions: chat completions kept for feedback and tuning when the caller opts in

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stored_completions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("completion_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(length=16), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_stored_completions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stored_completions")),
        sa.UniqueConstraint("completion_id", name=op.f("uq_stored_completions_completion_id")),
    )
    op.create_index(op.f("ix_stored_completions_user_id"), "stored_completions", ["user_id"])
    op.create_index(op.f("ix_stored_completions_created_at"), "stored_completions", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_stored_completions_created_at"), table_name="stored_completions")
    op.drop_index(op.f("ix_stored_completions_user_id"), table_name="stored_completions")
    op.drop_table("stored_completions")
