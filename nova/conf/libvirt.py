"""[libvirt]: the libvirt driver, including the default machine types."""

from oslo_config import cfg
from oslo_config import types

from nova.objects import fields

libvirt_group = cfg.OptGroup('libvirt', title='Libvirt options')


class MachineTypeEntry(types.String):
    """One ``arch=machine_type`` entry of ``[libvirt]hw_machine_type``.

    Checked when the configuration is parsed, so that a typo stops the
    service at start-up with the entry named, not at the first spawn.
    """

    def __init__(self):
        super().__init__(type_name='arch=machine_type')

    def __call__(self, value):
        value = super().__call__(value)
        entry = value.strip()
        if '=' not in entry:
            raise ValueError(
                "entry %r is not of the form arch=machine_type" % entry)
        arch, _, machine_type = (part.strip() for part in entry.partition('='))
        if fields.Architecture.canonicalize(arch) is None:
            raise ValueError(
                "entry %r names an unknown architecture %r" % (entry, arch))
        if not machine_type:
            raise ValueError("entry %r has an empty machine type" % entry)
        if not fields.is_valid_machine_type(machine_type):
            raise ValueError(
                "entry %r has an invalid machine type: a machine type is "
                "letters, digits, '.', '_' and '-', at most %d characters"
                % (entry, fields.MACHINE_TYPE_MAX_LEN))
        return entry


libvirt_opts = [
    cfg.StrOpt(
        'connection_uri',
        default='qemu:///system',
        help='libvirt URI the compute service opens, for example '
             'qemu:///system, or test:///default for libvirt\'s in-process '
             'test driver.'),
    cfg.StrOpt(
        'virt_type',
        default='kvm',
        choices=('kvm', 'qemu', 'test'),
        help='Domain type of the guests this host defines.'),
    cfg.ListOpt(
        'hw_machine_type',
        item_type=MachineTypeEntry(),
        default=[],
        help='Default machine type per guest architecture, as a list of '
             'arch=machine_type entries, for example "x86_64=q35,'
             'aarch64=virt". It is used only for instances that have no '
             'recorded machine type and whose image has no hw_machine_type '
             'property: changing it never changes the machine type of an '
             'existing instance. Architectures not listed use the built-in '
             'default (x86_64 and i686: pc; aarch64 and armv7l: virt; s390 '
             'and s390x: s390-ccw-virtio; ppc64 and ppc64le: pseries).'),
]


def machine_type_defaults(conf=cfg.CONF):
    """``[libvirt]hw_machine_type`` as {canonical arch: machine type}."""
    mapping = {}
    for entry in conf.libvirt.hw_machine_type:
        arch, _, machine_type = (part.strip() for part in entry.partition('='))
        mapping[fields.Architecture.canonicalize(arch)] = machine_type
    return mapping


def register_opts(conf):
    conf.register_group(libvirt_group)
    conf.register_opts(libvirt_opts, group=libvirt_group)


def list_opts():
    return {libvirt_group: libvirt_opts}
