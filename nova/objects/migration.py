"""Migration: a cold migration of an instance, as Nova's migrations table
holds it.

Confirming or reverting a resize needs to know where the instance came
from and which vm_state it had; that lives here, in the cell database,
so that any nova-compute process of either host, restarted or not, can
finish the migration.
"""

import uuid as uuid_lib

from nova.db.main import api as db
from nova.objects import base

# Nova's migration_type of a cold migration (a resize to the same flavor).
MIGRATION = 'migration'
# Nova's statuses, in the order a cold migration goes through them.
MIGRATING = 'migrating'
POST_MIGRATING = 'post-migrating'
FINISHED = 'finished'
CONFIRMING = 'confirming'
CONFIRMED = 'confirmed'
REVERTING = 'reverting'
REVERTED = 'reverted'
ERROR = 'error'


class Migration(base.ChangeTracking):
    """One row of the cell database's ``migrations`` table."""

    FIELDS = ('id', 'uuid', 'instance_uuid', 'source_compute',
              'dest_compute', 'source_node', 'dest_node', 'migration_type',
              'status', 'old_vm_state', 'created_at', 'updated_at',
              'deleted_at', 'deleted')

    # Set by the database, never written by save().
    READ_ONLY = ('id', 'created_at', 'updated_at', 'deleted_at', 'deleted')

    def _changed_values(self):
        return {name: getattr(self, name) for name in self.obj_what_changed()
                if name not in self.READ_ONLY}

    def create(self):
        """Insert this migration (a new uuid unless one is set)."""
        if self.uuid is None:
            self.uuid = str(uuid_lib.uuid4())
        if self.migration_type is None:
            self.migration_type = MIGRATION
        self._load_row(db.migration_create(self._context,
                                           self._changed_values()))

    def save(self, expected_status=None):
        """Write the changed columns.

        ``expected_status``: only while the status in the database is
        still that one; MigrationError otherwise, and nothing written.
        """
        values = self._changed_values()
        if not values:
            return
        self._load_row(db.migration_update(
            self._context, self.uuid, values,
            expected_status=expected_status))

    def move_on(self, status, expected_status):
        """Save ``status``, conditioned on the status read being current."""
        self.status = status
        self.save(expected_status=expected_status)

    @classmethod
    def get_by_instance_and_status(cls, context, instance_uuid, status):
        """The instance's newest migration in ``status``; MigrationError
        if it has none."""
        migration = cls(context)
        migration._load_row(db.migration_get_by_instance_and_status(
            context, instance_uuid, status))
        return migration

    def __repr__(self):
        return 'Migration(uuid=%s, instance=%s, %s -> %s, %s)' % (
            self.uuid, self.instance_uuid, self.source_compute,
            self.dest_compute, self.status)
