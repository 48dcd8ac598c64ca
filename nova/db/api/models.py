"""The API database: which cell each instance and compute host lives in."""

import sqlalchemy as sa
from sqlalchemy import orm

from nova.db import models_base

BASE = models_base.declarative_base()
TABLE_ARGS = {'mysql_engine': 'InnoDB', 'mysql_charset': 'utf8mb4'}


class CellMapping(BASE):
    __tablename__ = 'cell_mappings'
    __table_args__ = (
        sa.UniqueConstraint('uuid', name='uniq_cell_mappings0uuid'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    uuid = sa.Column(sa.String(36), nullable=False)
    name = sa.Column(sa.String(255))
    transport_url = sa.Column(sa.Text)
    database_connection = sa.Column(sa.Text)
    disabled = sa.Column(sa.Boolean, nullable=False, default=False)


class InstanceMapping(BASE):
    __tablename__ = 'instance_mappings'
    __table_args__ = (
        sa.UniqueConstraint('instance_uuid',
                            name='uniq_instance_mappings0instance_uuid'),
        sa.Index('instance_mappings_cell_id_idx', 'cell_id'),
        sa.Index('instance_mappings_project_id_idx', 'project_id'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    instance_uuid = sa.Column(sa.String(36), nullable=False)
    cell_id = sa.Column(sa.Integer, sa.ForeignKey('cell_mappings.id'))
    project_id = sa.Column(sa.String(255), nullable=False)
    user_id = sa.Column(sa.String(255))
    queued_for_delete = sa.Column(sa.Boolean, default=False)

    cell_mapping = orm.relationship('CellMapping', lazy='joined')


class HostMapping(BASE):
    __tablename__ = 'host_mappings'
    __table_args__ = (
        sa.UniqueConstraint('host', name='uniq_host_mappings0host'),
        sa.Index('host_mappings_cell_id_idx', 'cell_id'),
        TABLE_ARGS,
    )

    id = sa.Column(sa.Integer, primary_key=True, autoincrement=True)
    cell_id = sa.Column(sa.Integer, sa.ForeignKey('cell_mappings.id'),
                        nullable=False)
    host = sa.Column(sa.String(255), nullable=False)

    cell_mapping = orm.relationship('CellMapping', lazy='joined')
