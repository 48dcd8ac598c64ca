"""A small base for objects that save only what changed."""


class ChangeTracking:
    """Remember which of ``FIELDS`` were assigned since the last reset."""

    FIELDS = ()

    def __init__(self, context=None, **values):
        object.__setattr__(self, '_context', context)
        object.__setattr__(self, '_changed', set())
        for name in self.FIELDS:
            object.__setattr__(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name, value):
        if name in self.FIELDS:
            self._changed.add(name)
        object.__setattr__(self, name, value)

    def obj_what_changed(self):
        return set(self._changed)

    def obj_reset_changes(self):
        self._changed.clear()

    def _load_row(self, row):
        """Set every field from a database row (a dict) as unchanged."""
        for name in self.FIELDS:
            if name in row:
                object.__setattr__(self, name, row[name])
        self.obj_reset_changes()
