"""[DEFAULT] options every service shares."""

import os
import socket

from oslo_config import cfg

base_opts = [
    cfg.HostnameOpt(
        'host',
        default=socket.gethostname(),
        sample_default='<current_hostname>',
        help='Name of this node, as the compute service records it in the '
             'services table and in the host column of its instances.'),
    cfg.StrOpt(
        'state_path',
        default=os.path.join(os.path.expanduser('~'), '.local', 'state',
                             'nova'),
        sample_default='$HOME/.local/state/nova',
        help='Directory where nova keeps its state, including the embedded '
             'SQLite databases used when no database connection is set.'),
    cfg.IntOpt(
        'cell_timeout',
        default=60, min=1,
        help='Seconds a command that spans cells (nova-status upgrade '
             'check, nova-manage libvirt list_unset_machine_type, '
             'machine_type_summary, bulk_update_machine_type --dry-run) '
             'waits for each cell to answer; a cell that has not answered '
             'by then is reported as not answering and the others are '
             'reported in full. It is also the longest any statement on a '
             'cell database waits for a lock (MariaDB/MySQL '
             'lock_wait_timeout, PostgreSQL lock_timeout), so that a cell '
             'whose tables are locked fails instead of hanging a command '
             'that waits for every cell (bulk_update_machine_type, db '
             'online_data_migrations).'),
    cfg.IntOpt(
        'cell_connect_timeout',
        default=10, min=1,
        help='Seconds to wait for a cell database server to accept a '
             'connection (the driver\'s connect_timeout, unless the cell\'s '
             'database URL sets one). A cell whose server is down or '
             'unreachable then fails within [database]max_retries + 1 '
             'attempts of this long, instead of waiting for TCP to give '
             'up.'),
]


def register_opts(conf):
    conf.register_opts(base_opts)


def list_opts():
    return {'DEFAULT': base_opts}
