"""Alembic environment of the API database (see nova.db.migration)."""

from nova.db.api import models
from nova.db import migration

migration.run_alembic_env(models.METADATA)
