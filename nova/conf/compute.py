"""[compute]: options of the nova-compute service."""

from oslo_config import cfg

compute_group = cfg.OptGroup('compute', title='Compute service options')

compute_opts = [
    cfg.IntOpt(
        'libvirt_connect_retries',
        default=5,
        min=0,
        help='How many more times nova-compute tries to open libvirt at '
             'start-up when it cannot be reached, before giving up.'),
    cfg.FloatOpt(
        'libvirt_connect_retry_interval',
        default=2.0,
        min=0,
        help='Seconds before the first retry to open libvirt; each further '
             'retry waits twice as long as the previous one.'),
]


def register_opts(conf):
    conf.register_group(compute_group)
    conf.register_opts(compute_opts, group=compute_group)


def list_opts():
    return {compute_group: compute_opts}
