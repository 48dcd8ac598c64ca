"""Columns every Nova table shares: timestamps and soft delete."""

from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy import orm


class NovaBase:
    """created_at / updated_at / deleted_at and ``deleted``.

    ``deleted`` is 0 while a row is live and takes the row's ``id`` once it
    is soft-deleted, so that a unique key that includes ``deleted`` allows
    one live row and any number of deleted ones.
    """

    created_at = sa.Column(sa.DateTime, default=timeutils.utcnow)
    updated_at = sa.Column(sa.DateTime, onupdate=timeutils.utcnow)
    deleted_at = sa.Column(sa.DateTime)
    deleted = sa.Column(sa.Integer, default=0, nullable=False)


def declarative_base():
    """A new declarative base for one database's models."""
    return orm.declarative_base(cls=NovaBase)
