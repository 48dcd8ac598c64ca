"""Which machine type a guest gets: the one resolution function and helpers.

Every place that defines a domain asks ``get_machine_type``, so spawn, the
compute start-up and the online data migration all agree.

It lives here, below the objects layer, because both the online data
migration (``nova.objects.instance``) and the libvirt driver need it: it
reads only the configuration and the architecture names, so the objects
can import it without importing the driver's package.
"""

import nova.conf
from nova.conf import libvirt as libvirt_conf
from nova.objects import fields

CONF = nova.conf.CONF

# The system metadata key that records an instance's machine type for life.
MACHINE_TYPE_SYSMETA_KEY = 'hw_machine_type'
# The image property (and its image_ copy in system metadata) asking for one.
MACHINE_TYPE_IMAGE_PROPERTY = 'hw_machine_type'
ARCH_IMAGE_PROPERTY = 'hw_architecture'

_Arch = fields.Architecture
# QEMU's usual machine type per architecture, used when nothing else says.
DEFAULT_MACHINE_TYPES = {
    _Arch.ARMV7: 'virt',
    _Arch.AARCH64: 'virt',
    _Arch.S390: 's390-ccw-virtio',
    _Arch.S390X: 's390-ccw-virtio',
    _Arch.I686: 'pc',
    _Arch.X86_64: 'pc',
    _Arch.PPC64: 'pseries',
    _Arch.PPC64LE: 'pseries',
}


def get_default_machine_type(arch, conf=CONF):
    """Return the default machine type for a guest arch, or None.

    The ``[libvirt]hw_machine_type`` entry for the arch wins over the
    built-in default; None when neither knows the arch.
    """
    arch = _Arch.canonicalize(arch)
    return (libvirt_conf.machine_type_defaults(conf).get(arch)
            or DEFAULT_MACHINE_TYPES.get(arch))


def get_guest_arch(image_meta, instance):
    """Return the canonical guest arch of an instance.

    The image's ``hw_architecture`` wins, then the instance's
    ``architecture``, then the arch of the host running this code; an
    unknown name is skipped as if it were absent.
    """
    return (_Arch.canonicalize(image_meta.properties.get(ARCH_IMAGE_PROPERTY))
            or _Arch.canonicalize(instance.architecture)
            or _Arch.from_host())


def get_machine_type(image_meta, instance):
    """Return the machine type a domain of this instance must use, or None.

    The recorded value always wins, so an instance keeps its chipset for
    life; then the image's ``hw_machine_type``; then the default for the
    guest arch (configuration, then built-in).
    """
    return (instance.system_metadata.get(MACHINE_TYPE_SYSMETA_KEY)
            or image_meta.properties.get(MACHINE_TYPE_IMAGE_PROPERTY)
            or get_default_machine_type(get_guest_arch(image_meta, instance)))
