"""tuning data sets: checked, deduplicated and split examples, shared with groups

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuning_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=True),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("train_count", sa.Integer(), nullable=False),
        sa.Column("eval_count", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("redacted", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_tuning_datasets_owner_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_datasets")),
        sa.UniqueConstraint("name", name=op.f("uq_tuning_datasets_name")),
        sa.UniqueConstraint("public_id", name=op.f("uq_tuning_datasets_public_id")),
    )
    op.create_index(op.f("ix_tuning_datasets_owner_user_id"), "tuning_datasets", ["owner_user_id"])
    op.create_table(
        "tuning_dataset_shares",
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["tuning_datasets.id"],
            name=op.f("fk_tuning_dataset_shares_dataset_id_tuning_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_tuning_dataset_shares_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", "group_id", name=op.f("pk_tuning_dataset_shares")),
    )
    op.create_table(
        "tuning_examples",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["tuning_datasets.id"],
            name=op.f("fk_tuning_examples_dataset_id_tuning_datasets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_examples")),
        sa.UniqueConstraint("dataset_id", "ordinal", name=op.f("uq_tuning_examples_dataset_id")),
    )


def downgrade() -> None:
    op.drop_table("tuning_examples")
    op.drop_table("tuning_dataset_shares")
    op.drop_index(op.f("ix_tuning_datasets_owner_user_id"), table_name="tuning_datasets")
    op.drop_table("tuning_datasets")
