"""Columns every Nova table shares: timestamps and soft delete.

The models are SQLAlchemy Core tables: every query in the project is a
Core statement, and the operator commands that load the models must not
pay for importing the ORM (doc/source/contributor/architecture.rst,
"Fast commands"). They carry no MySQL storage options: the Alembic
revisions create every table (InnoDB, utf8mb4), nothing creates one
from these, and the options would make every process import the MySQL
dialect, whatever its database.
"""

from oslo_utils import timeutils
import sqlalchemy as sa


def nova_columns():
    """created_at / updated_at / deleted_at and ``deleted``, for one table.

    ``deleted`` is 0 while a row is live and takes the row's ``id`` once it
    is soft-deleted, so that a unique key that includes ``deleted`` allows
    one live row and any number of deleted ones. New Column objects each
    call: a column belongs to one table.
    """
    return [
        sa.Column('created_at', sa.DateTime, default=timeutils.utcnow),
        sa.Column('updated_at', sa.DateTime, onupdate=timeutils.utcnow),
        sa.Column('deleted_at', sa.DateTime),
        sa.Column('deleted', sa.Integer, default=0, nullable=False),
    ]
