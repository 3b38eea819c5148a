"""Initial schema: observations, watermarks, source health, rejections, collection runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

from monitor.storage.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "observations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("measure", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(35), nullable=False),
        sa.Column("period_start", UTCDateTime, nullable=False),
        sa.Column("period_end", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("collected_at", UTCDateTime, nullable=False),
        sa.Column("raw_ref", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_observations"),
        sa.UniqueConstraint("measure", "unit", "period_start", "period_end", "source",
                            name="uq_observations_key"),
    )
    op.create_index("ix_observations_window", "observations", ["measure", "period_start"])
    op.create_table(
        "watermarks",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("resume_from", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_watermarks"),
    )
    op.create_table(
        "source_health",
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime, nullable=True),
        sa.Column("last_success_at", UTCDateTime, nullable=True),
        sa.Column("last_error_at", UTCDateTime, nullable=True),
        sa.Column("last_error_reason", sa.String(32), nullable=True),
        sa.Column("last_error_message", sa.Text, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("last_duration_seconds", sa.Float, nullable=True),
        sa.Column("last_observations", sa.Integer, nullable=False),
        sa.Column("last_rejections", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_health"),
    )
    op.create_table(
        "rejections",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("rejected_at", UTCDateTime, nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("unit", sa.String(35), nullable=True),
        sa.Column("measure", sa.String(64), nullable=True),
        sa.Column("period_start", UTCDateTime, nullable=True),
        sa.Column("raw_ref", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejections"),
    )
    op.create_index("ix_rejections_source_time", "rejections", ["source", "rejected_at"])
    op.create_table(
        "collection_runs",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("periods_from", UTCDateTime, nullable=True),
        sa.Column("periods_to", UTCDateTime, nullable=True),
        sa.Column("observations", sa.Integer, nullable=False),
        sa.Column("rejections", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_collection_runs"),
    )
    op.create_index("ix_collection_runs_source_time", "collection_runs", ["source", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_collection_runs_source_time", "collection_runs")
    op.drop_table("collection_runs")
    op.drop_index("ix_rejections_source_time", "rejections")
    op.drop_table("rejections")
    op.drop_table("source_health")
    op.drop_table("watermarks")
    op.drop_index("ix_observations_window", "observations")
    op.drop_table("observations")
