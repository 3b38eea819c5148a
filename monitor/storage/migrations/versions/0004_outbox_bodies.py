"""Outbox message bodies in a table of their own.

Every status move of an outbox row (claim, sent, retry) rewrote the whole row,
and with the ~20 KB message inline SQLite rewrote the body and its overflow pages
each time. The body is written once, so it moves to ``outbox_bodies``; the
existing bodies are copied byte for byte, and the downgrade puts them back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "outbox_bodies",
        sa.Column("outbox_id", Id, autoincrement=False, nullable=False),
        sa.Column("message", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("outbox_id", name="pk_outbox_bodies"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name="fk_outbox_bodies_outbox", ondelete="CASCADE"),
    )
    op.execute("INSERT INTO outbox_bodies (outbox_id, message) SELECT id, message FROM outbox")
    # Batch mode: SQLite cannot drop a column in place, so the table is rebuilt (with its
    # index and unique key); on PostgreSQL this is a plain ALTER TABLE.
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("message")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("message", sa.LargeBinary, nullable=True))
    op.execute("UPDATE outbox SET message = "
               "(SELECT message FROM outbox_bodies WHERE outbox_bodies.outbox_id = outbox.id)")
    # NOT NULL again, as 0003 made it: a row without a body (none should exist) stops the
    # downgrade here rather than leaving a message that would be sent empty.
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("message", existing_type=sa.LargeBinary, nullable=False)
    op.drop_table("outbox_bodies")
