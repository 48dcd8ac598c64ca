"""[database]: the cell database, with oslo.db's options."""

from oslo_db import options as oslo_db_options

# Without a connection the cell database is an SQLite file under state_path.
DEFAULT_CONNECTION = 'sqlite:///$state_path/nova.sqlite'


def register_opts(conf):
    oslo_db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)


def list_opts():
    return {'database': oslo_db_options.database_opts}
