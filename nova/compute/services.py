"""The nova-compute service of each host of this process, by host name.

Methods that Nova runs as RPC casts between hosts (finishing a migration
on the destination, reverting on the source) are calls between the
ComputeManagers of the two hosts here, which live in the same process.
The ComputeManager created last for a host stands for that host's
nova-compute (a restart replaces the old one), as an RPC topic would.
"""

from nova import exception

_SERVICES = {}


def register(manager):
    """Make ``manager`` its host's nova-compute from now on."""
    _SERVICES[manager.host] = manager


def get(host):
    """The ComputeManager of ``host``; MigrationError if none runs."""
    manager = _SERVICES.get(host)
    if manager is None:
        raise exception.MigrationError(
            reason='no nova-compute runs on host %s' % host)
    return manager
