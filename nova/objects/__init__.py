"""The objects services and commands work with.

``from nova import objects; objects.Instance(...)`` works as in Nova, but
each class is imported from its module on first use (PEP 562). So
importing a leaf of this package, as ``nova.conf`` imports
``nova.objects.fields`` for the architecture names, loads nothing else:
the configuration never pulls in the objects, which themselves need the
configuration (that was an import cycle).
"""

import importlib

# Public name -> module of this package that defines it.
_CLASSES = {
    'CellMapping': 'cell_mapping',
    'CellMappingList': 'cell_mapping',
    'HostMapping': 'host_mapping',
    'ImageMeta': 'image_meta',
    'Instance': 'instance',
    'InstanceList': 'instance',
    'InstanceMapping': 'instance_mapping',
    'Migration': 'migration',
    'Service': 'service',
    'ServiceList': 'service',
}

__all__ = sorted(_CLASSES)


def __getattr__(name):
    """Import the class ``name`` from its module the first time it is used.

    Submodules (``objects.instance``) are imported on use too, as if the
    package had imported them.
    """
    module = _CLASSES.get(name, name)
    try:
        loaded = importlib.import_module('%s.%s' % (__name__, module))
    except ModuleNotFoundError as exc:
        if exc.name != '%s.%s' % (__name__, module):
            raise
        raise AttributeError('module %r has no attribute %r'
                             % (__name__, name)) from None
    value = getattr(loaded, name) if name in _CLASSES else loaded
    globals()[name] = value
    return value


def __dir__():
    """The public classes, for dir() and completion."""
    return sorted(set(globals()) | set(_CLASSES))
