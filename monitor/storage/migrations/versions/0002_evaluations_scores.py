"""Target evaluations and composite index scores.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

from monitor.storage.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(100), nullable=False),
        sa.Column("kpi", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(35), nullable=False),
        sa.Column("as_of_day", sa.Date, nullable=False),
        sa.Column("as_of", UTCDateTime, nullable=False),
        sa.Column("window", sa.String(32), nullable=False),
        sa.Column("window_start", UTCDateTime, nullable=False),
        sa.Column("window_end", UTCDateTime, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actual", sa.Float, nullable=True),
        sa.Column("numerator", sa.Float, nullable=False),
        sa.Column("denominator", sa.Float, nullable=False),
        sa.Column("units_reporting", sa.Integer, nullable=False),
        sa.Column("comparator", sa.String(2), nullable=False),
        sa.Column("target", sa.Float, nullable=False),
        sa.Column("expected", sa.Float, nullable=False),
        sa.Column("gap", sa.Float, nullable=True),
        sa.Column("gap_to_target", sa.Float, nullable=True),
        sa.Column("deadline", sa.Date, nullable=False),
        sa.Column("baseline_value", sa.Float, nullable=True),
        sa.Column("baseline_date", sa.Date, nullable=True),
        sa.Column("data_through", UTCDateTime, nullable=True),
        sa.Column("forecast_value", sa.Float, nullable=True),
        sa.Column("forecast_reached_on", sa.Date, nullable=True),
        sa.Column("forecast_reachable", sa.Boolean, nullable=True),
        sa.Column("forecast_points", sa.Integer, nullable=False),
        sa.Column("trend_per_year", sa.Float, nullable=True),
        sa.Column("clear", sa.Boolean, nullable=False),
        sa.Column("evaluated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint("rule", "unit", "as_of_day", name="uq_evaluations_key"),
    )
    op.create_index("ix_evaluations_day", "evaluations", ["as_of_day"])
    op.create_table(
        "scores",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("index_id", sa.String(64), nullable=False),
        sa.Column("unit", sa.String(35), nullable=False),
        sa.Column("as_of_day", sa.Date, nullable=False),
        sa.Column("unit_group", sa.String(64), nullable=False),
        sa.Column("level", sa.String(32), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("max_score", sa.Float, nullable=False),
        sa.Column("scaled", sa.Float, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("rank_size", sa.Integer, nullable=False),
        sa.Column("complete", sa.Boolean, nullable=False),
        sa.Column("criteria", sa.Text, nullable=False),
        sa.Column("missing", sa.Text, nullable=False),
        sa.Column("evaluated_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
        sa.UniqueConstraint("index_id", "unit", "as_of_day", name="uq_scores_key"),
    )
    op.create_index("ix_scores_day", "scores", ["as_of_day"])


def downgrade() -> None:
    op.drop_index("ix_scores_day", table_name="scores")
    op.drop_table("scores")
    op.drop_index("ix_evaluations_day", table_name="evaluations")
    op.drop_table("evaluations")
