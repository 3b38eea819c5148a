"""Storage: SQLAlchemy 2 models, Alembic migrations, and the store the service uses."""

from monitor.storage.db import create_engine_for, upgrade_database
from monitor.storage.store import Store

__all__ = ["Store", "create_engine_for", "upgrade_database"]
