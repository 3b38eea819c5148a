"""Migration 0004 (outbox bodies in their own table) over SQLite and a real PostgreSQL:
a message stored at 0003 keeps its exact bytes through the upgrade, is sent from
there, and comes back into the outbox row on downgrade."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from monitor.alerts.outbox import Outbox
from monitor.storage import create_engine_for, upgrade_database
from monitor.storage.db import _alembic_config, current_revision, head_revision

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
# Every byte value, CRLFs, UTF-8 and a NUL: a copy that re-encoded or trimmed anything would differ.
BODY = ("Subject: Báo cáo\r\n\r\nTỷ lệ hồ sơ trực tuyến\r\n".encode() + bytes(range(256)) + b"\x00\r\n") * 100
# The 0003 outbox, as it was (with the message column).
OUTBOX_0003 = sa.table(
    "outbox", sa.column("id", sa.Integer), sa.column("key", sa.String), sa.column("kind", sa.String),
    sa.column("recipient", sa.String), sa.column("subject", sa.Text), sa.column("message_id", sa.String),
    sa.column("message", sa.LargeBinary), sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("status", sa.String), sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", sa.DateTime(timezone=True)))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine_for(database_url)
    command.upgrade(_alembic_config(engine), "0003")
    yield engine
    engine.dispose()


def store_at_0003(engine: Engine, key: str, message: bytes) -> int:
    with engine.begin() as connection:
        return int(connection.execute(OUTBOX_0003.insert().values(
            key=key, kind="digest", recipient="a@soyte.example.vn", subject="s", message_id=f"<{key}@x>",
            message=message, created_at=NOW, status="pending", attempts=0, next_attempt_at=NOW,
        ).returning(OUTBOX_0003.c.id)).scalar_one())


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def outbox_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns("outbox")}


def test_upgrade_moves_bodies_byte_for_byte_and_downgrade_restores_them(engine: Engine) -> None:
    assert current_revision(engine) == "0003"
    first = store_at_0003(engine, "k1", BODY)
    second = store_at_0003(engine, "k2", b"short\r\n")

    assert upgrade_database(engine) == head_revision()
    assert "message" not in outbox_columns(engine) and "outbox_bodies" in tables(engine)
    outbox = Outbox(engine)
    assert outbox.message(first) == BODY
    assert outbox.message(second) == b"short\r\n"
    # And the deliverer gets it from there.
    claimed = outbox.claim_due(NOW + timedelta(seconds=1), limit=10, lease=timedelta(minutes=5))
    assert [(m.id, m.message) for m in claimed] == [(first, BODY), (second, b"short\r\n")]
    # A message enqueued after the upgrade goes back into the row on downgrade too.
    assert outbox.enqueue_now(key="k3", kind="digest", recipient="b@soyte.example.vn", subject="s",
                              message_id="<k3@x>", message=BODY[::-1], now=NOW)

    command.downgrade(_alembic_config(engine), "0003")
    assert current_revision(engine) == "0003"
    assert "outbox_bodies" not in tables(engine) and "message" in outbox_columns(engine)
    with engine.connect() as connection:
        restored = dict(connection.execute(sa.select(OUTBOX_0003.c.key, OUTBOX_0003.c.message)).all())
    assert {key: bytes(value) for key, value in restored.items()} == {"k1": BODY, "k2": b"short\r\n",
                                                                      "k3": BODY[::-1]}

    # And up again: the round trip loses nothing.
    assert upgrade_database(engine) == head_revision()
    assert Outbox(engine).message(first) == BODY


def test_upgrade_of_an_empty_outbox(engine: Engine) -> None:
    assert upgrade_database(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM outbox_bodies")).scalar_one() == 0
