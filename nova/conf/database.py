"""[database]: the cell database, with oslo.db's options."""

from oslo_db import options as oslo_db_options

# Without a connection the cell database is an SQLite file under state_path.
DEFAULT_CONNECTION = 'sqlite:///$state_path/nova.sqlite'


def register_opts(conf):
    oslo_db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)
    # oslo.db's own defaults (10 attempts, 10 s apart) keep an operator
    # command silent for 100 s when the database is down; fail within
    # seconds instead, with the reason.
    conf.set_default('max_retries', 2, group='database')
    conf.set_default('retry_interval', 1, group='database')


def list_opts():
    return {'database': oslo_db_options.database_opts}
