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

# Nova's migration_type of a cold migration (a resize to the same flavor)
# and of an evacuation.
MIGRATION = 'migration'
EVACUATION = 'evacuation'
# Nova's statuses, in the order a cold migration goes through them; the
# transitions are drawn in doc/source/contributor/architecture.rst
# ("Cold migrations"). Nova's 'confirming' is not used: confirming cleans
# nothing up here (the source's domain went when the migration started),
# so confirm moves 'finished' to 'confirmed' in one write.
MIGRATING = 'migrating'
POST_MIGRATING = 'post-migrating'
FINISHED = 'finished'
CONFIRMED = 'confirmed'
REVERTING = 'reverting'
REVERTED = 'reverted'
ERROR = 'error'
# An evacuation's: asked for, then done (or failed) on the destination.
ACCEPTED = 'accepted'
DONE = 'done'
FAILED = 'failed'


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
        """Save ``status``, conditioned on the status read being current.

        On MigrationError (another host moved it on) the object keeps the
        status it had.
        """
        previous = self.status
        self.status = status
        try:
            self.save(expected_status=expected_status)
        except Exception:
            self.status = previous
            raise

    @classmethod
    def _from_row(cls, context, row):
        migration = cls(context)
        migration._load_row(row)
        return migration

    @classmethod
    def get_by_instance_and_status(cls, context, instance_uuid, *statuses):
        """The instance's newest migration in one of ``statuses``;
        MigrationError if it has none."""
        return cls._from_row(context, db.migration_get_by_instance_and_status(
            context, instance_uuid, statuses))

    @classmethod
    def get_all_from_host(cls, context, host, status):
        """The migrations in ``status`` whose source is host ``host``."""
        return [cls._from_row(context, row) for row in
                db.migration_get_all_by_host_and_status(
                    context, host, status, 'source_compute')]

    @classmethod
    def get_all_to_host(cls, context, host, status):
        """The migrations in ``status`` whose destination is ``host``."""
        return [cls._from_row(context, row) for row in
                db.migration_get_all_by_host_and_status(
                    context, host, status, 'dest_compute')]

    def __repr__(self):
        return 'Migration(uuid=%s, instance=%s, %s -> %s, %s)' % (
            self.uuid, self.instance_uuid, self.source_compute,
            self.dest_compute, self.status)
