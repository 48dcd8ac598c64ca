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
]


def register_opts(conf):
    conf.register_opts(base_opts)


def list_opts():
    return {'DEFAULT': base_opts}
