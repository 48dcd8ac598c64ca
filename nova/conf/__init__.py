"""The configuration of every service, one module per option group."""

from oslo_config import cfg

from nova.conf import api_database
from nova.conf import base
from nova.conf import compute
from nova.conf import database
from nova.conf import libvirt

CONF = cfg.CONF

base.register_opts(CONF)
database.register_opts(CONF)
api_database.register_opts(CONF)
libvirt.register_opts(CONF)
compute.register_opts(CONF)
