"""Service: a nova service (nova-compute) running on a host."""

from oslo_utils import timeutils

from nova.db.main import api as db
from nova.objects import base

# Bumped when a service starts doing something older services did not.
# 1: nova-compute records every instance's machine type at start-up and
#    spawn, and reports the machine types its host supports.
SERVICE_VERSION = 1
# The first nova-compute version that records machine types.
MACHINE_TYPE_RECORDING_VERSION = 1


class Service(base.ChangeTracking):
    FIELDS = ('id', 'uuid', 'host', 'binary', 'topic', 'report_count',
              'disabled', 'version', 'last_seen_up', 'created_at',
              'updated_at', 'deleted_at', 'deleted')

    @classmethod
    def get_by_host_and_binary(cls, context, host, binary):
        service = cls(context)
        service._load_row(db.service_get_by_host_and_binary(context, host,
                                                            binary))
        return service

    @classmethod
    def register(cls, context, host, binary, topic=None):
        """Create or update the (host, binary) row at the current version."""
        row = db.service_create_or_update(context, host, binary, {
            'version': SERVICE_VERSION, 'topic': topic or binary,
            'disabled': False, 'last_seen_up': timeutils.utcnow()})
        service = cls(context)
        service._load_row(row)
        return service


class ServiceList:
    @staticmethod
    def get_by_binary(context, binary):
        services = []
        for row in db.service_get_all_by_binary(context, binary):
            service = Service(context)
            service._load_row(row)
            services.append(service)
        return services
