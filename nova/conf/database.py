"""[database]: the cell database, with oslo.db's options."""

from oslo_config import cfg
from oslo_db import options as oslo_db_options

# Without a connection the cell database is an SQLite file under state_path.
DEFAULT_CONNECTION = 'sqlite:///$state_path/nova.sqlite'


# Nova's own options of the group, beside oslo.db's.
sync_opts = [
    cfg.IntOpt(
        'sync_wait_timeout',
        default=3600, min=1,
        help='Seconds nova-manage db sync waits, at most, at any one '
             'point, for other sessions of the cell database: another db '
             'sync of the same database, and the open transactions that '
             'keep an online index build from starting or finishing (a '
             'backup, a client '
             'idle in a transaction). It says for whom it waits every 10 '
             'seconds; past this it stops with exit code 1 and a line '
             'naming the session it waited for. Run it again once that '
             'session ends: it resumes where it stopped.'),
]


def register_opts(conf):
    conf.register_opts(sync_opts, group='database')
    oslo_db_options.set_defaults(conf, connection=DEFAULT_CONNECTION)
    # oslo.db's own defaults (10 attempts, 10 s apart) keep an operator
    # command silent for 100 s when the database is down; fail within
    # seconds instead, with the reason.
    conf.set_default('max_retries', 2, group='database')
    conf.set_default('retry_interval', 1, group='database')


def list_opts():
    return {'database': oslo_db_options.database_opts + sync_opts}
