"""All options, for oslo-config-generator.

See etc/nova/nova-config-generator.conf.
"""

from nova.conf import api_database
from nova.conf import base
from nova.conf import compute
from nova.conf import database
from nova.conf import libvirt

_MODULES = (base, database, api_database, libvirt, compute)


def list_opts():
    """Return [(group, [opts])] for every group, the generator's format."""
    return [(group, opts)
            for module in _MODULES
            for group, opts in module.list_opts().items()]
