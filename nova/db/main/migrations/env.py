"""Alembic environment of the cell database (see nova.db.migration)."""

from nova.db.main import models
from nova.db import migration

migration.run_alembic_env(models.METADATA)
