"""tuning jobs, their events, alias moves (promote / rollback) and continual-learning schedules

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuning_alias_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("target", sa.String(length=128), nullable=False),
        sa.Column("previous", sa.String(length=128), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_alias_changes")),
    )
    op.create_index(
        op.f("ix_tuning_alias_changes_alias"), "tuning_alias_changes", ["alias"], unique=False
    )
    op.create_table(
        "tuning_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("base_job", sa.String(length=128), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=True),
        sa.Column("min_new_feedback", sa.Integer(), nullable=False),
        sa.Column("min_rating", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_feedback_id", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("last_run_at", sa.Float(), nullable=True),
        sa.Column("last_job", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_tuning_schedules_name")),
    )
    op.create_table(
        "tuning_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("owner_user_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("base_model", sa.String(length=128), nullable=False),
        sa.Column("parent_job_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("dataset_name", sa.String(length=128), nullable=False),
        sa.Column("eval_dataset_id", sa.Integer(), nullable=True),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("scorer", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("runner", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=True),
        sa.Column("trained_tokens", sa.BigInteger(), nullable=False),
        sa.Column("train_seconds", sa.Float(), nullable=False),
        sa.Column("torch_eval_loss", sa.Float(), nullable=True),
        sa.Column("evaluation", sa.JSON(), nullable=True),
        sa.Column("fine_tuned_model", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["tuning_datasets.id"],
            name=op.f("fk_tuning_jobs_dataset_id_tuning_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["eval_dataset_id"],
            ["tuning_datasets.id"],
            name=op.f("fk_tuning_jobs_eval_dataset_id_tuning_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_tuning_jobs_owner_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_job_id"],
            ["tuning_jobs.id"],
            name=op.f("fk_tuning_jobs_parent_job_id_tuning_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_jobs")),
        sa.UniqueConstraint("name", name=op.f("uq_tuning_jobs_name")),
        sa.UniqueConstraint("public_id", name=op.f("uq_tuning_jobs_public_id")),
    )
    op.create_index(
        op.f("ix_tuning_jobs_owner_user_id"), "tuning_jobs", ["owner_user_id"], unique=False
    )
    op.create_index(op.f("ix_tuning_jobs_status"), "tuning_jobs", ["status"], unique=False)
    op.create_table(
        "tuning_job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["tuning_jobs.id"],
            name=op.f("fk_tuning_job_events_job_id_tuning_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tuning_job_events")),
    )
    op.create_index(
        op.f("ix_tuning_job_events_job_id"), "tuning_job_events", ["job_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tuning_job_events_job_id"), table_name="tuning_job_events")
    op.drop_table("tuning_job_events")
    op.drop_index(op.f("ix_tuning_jobs_status"), table_name="tuning_jobs")
    op.drop_index(op.f("ix_tuning_jobs_owner_user_id"), table_name="tuning_jobs")
    op.drop_table("tuning_jobs")
    op.drop_table("tuning_schedules")
    op.drop_index(op.f("ix_tuning_alias_changes_alias"), table_name="tuning_alias_changes")
    op.drop_table("tuning_alias_changes")
