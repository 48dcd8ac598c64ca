"""[api_database]: the API database (cell and instance mappings)."""

from oslo_config import cfg

api_db_group = cfg.OptGroup(
    'api_database',
    title='API database options',
    help='The API database holds the cell mappings and the mapping of every '
         'instance and compute host to its cell.')

api_db_opts = [
    cfg.StrOpt(
        'connection',
        secret=True,
        default='sqlite:///$state_path/nova_api.sqlite',
        help='SQLAlchemy URL of the API database.'),
    cfg.BoolOpt(
        'sqlite_synchronous',
        default=True,
        help='If True, SQLite uses synchronous mode.'),
    cfg.StrOpt(
        'mysql_sql_mode',
        default='TRADITIONAL',
        help='The SQL mode used for MySQL sessions.'),
    cfg.IntOpt(
        'connection_recycle_time',
        default=3600,
        help='Seconds after which a pooled connection is reopened.'),
    cfg.IntOpt(
        'max_pool_size',
        default=5,
        help='Largest number of SQL connections kept open in a pool.'),
    cfg.IntOpt(
        'max_retries',
        default=2,
        help='Attempts to open a connection at start-up; -1 retries forever.'),
    cfg.IntOpt(
        'retry_interval',
        default=1,
        help='Seconds between attempts to open a connection.'),
    cfg.IntOpt(
        'pool_timeout',
        help='Seconds to wait for a connection from the pool.'),
]


def register_opts(conf):
    conf.register_group(api_db_group)
    conf.register_opts(api_db_opts, group=api_db_group)


def list_opts():
    return {api_db_group: api_db_opts}
