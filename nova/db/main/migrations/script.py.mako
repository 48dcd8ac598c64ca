"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op
import sqlalchemy as sa
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    # Runs while every service reads and writes (see the contributor
    # guide, "Adding a schema revision"). An index or a unique key on a
    # large table (instances, instance_system_metadata) is built with
    # nova.db.online_schema.create_index in an
    # op.get_context().autocommit_block(), never with op.create_index or
    # op.create_unique_constraint, which lock the table while they build
    # (a test refuses them); SQLite takes op.batch_alter_table. Pattern:
    # 002_machine_type_unique_sysmeta.py.
    ${upgrades if upgrades else "pass"}
