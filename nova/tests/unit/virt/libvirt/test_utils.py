"""Machine type resolution: record, image, configuration, built-in."""

import platform

from oslo_config import fixture as config_fixture
import testtools

import nova.conf
from nova import machine_type
from nova.objects import fields
from nova.objects import image_meta
from nova import machine_type as utils


class FakeInstance:
    """What resolution reads from an instance."""

    def __init__(self, system_metadata=None, architecture=None):
        self.system_metadata = system_metadata or {}
        self.architecture = architecture


def _image(**properties):
    return image_meta.ImageMeta.from_dict({'properties': properties})


class ResolutionTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.flags = self.useFixture(config_fixture.Config(nova.conf.CONF))

    def _set_defaults(self, *entries):
        self.flags.config(hw_machine_type=list(entries), group='libvirt')

    def test_built_in_defaults(self):
        for arch, expected in (('armv7l', 'virt'), ('aarch64', 'virt'),
                               ('s390', 's390-ccw-virtio'),
                               ('s390x', 's390-ccw-virtio'),
                               ('i686', 'pc'), ('x86_64', 'pc'),
                               ('ppc64', 'pseries'), ('ppc64le', 'pseries'),
                               ('mips', None), ('bogus', None),
                               (None, None)):
            self.assertEqual(expected, utils.get_default_machine_type(arch),
                             arch)

    def test_conf_overrides_built_in(self):
        self._set_defaults('x86_64=q35', 'mips=malta')
        self.assertEqual('q35', utils.get_default_machine_type('x86_64'))
        self.assertEqual('q35', utils.get_default_machine_type('amd64'))
        self.assertEqual('malta', utils.get_default_machine_type('mips'))
        self.assertEqual('virt', utils.get_default_machine_type('aarch64'))

    def test_conf_arch_alias(self):
        self._set_defaults('amd64=q35')
        self.assertEqual('q35', utils.get_default_machine_type('x86_64'))

    def test_guest_arch_order(self):
        x86_instance = FakeInstance(architecture='x86_64')
        self.assertEqual('aarch64', utils.get_guest_arch(
            _image(hw_architecture='arm64'), x86_instance))
        self.assertEqual('x86_64', utils.get_guest_arch(
            _image(), FakeInstance(architecture='amd64')))
        self.assertEqual('x86_64', utils.get_guest_arch(
            _image(hw_architecture='bogus'), x86_instance))
        self.assertEqual(fields.Architecture.from_host(),
                         utils.get_guest_arch(_image(), FakeInstance()))

    def test_recorded_wins(self):
        self._set_defaults('x86_64=q35')
        instance = FakeInstance({'hw_machine_type': 'pc-i440fx-5.2'},
                                'x86_64')
        self.assertEqual('pc-i440fx-5.2', utils.get_machine_type(
            _image(hw_machine_type='pc-q35-7.2'), instance))

    def test_image_wins_over_defaults(self):
        self._set_defaults('x86_64=q35')
        self.assertEqual('pc-q35-6.2', utils.get_machine_type(
            _image(hw_machine_type='pc-q35-6.2'), FakeInstance({}, 'x86_64')))

    def test_conf_then_built_in_by_guest_arch(self):
        self._set_defaults('x86_64=q35')
        self.assertEqual('q35', utils.get_machine_type(
            _image(), FakeInstance(architecture='x86_64')))
        self.assertEqual('virt', utils.get_machine_type(
            _image(), FakeInstance(architecture='aarch64')))
        self.assertEqual('s390-ccw-virtio', utils.get_machine_type(
            _image(hw_architecture='s390x'),
            FakeInstance(architecture='x86_64')))

    # The built-in default of each host architecture this test may run
    # on, written out here (uname -m: Debian's amd64 is x86_64).
    HOST_DEFAULTS = {'x86_64': 'pc', 'amd64': 'pc', 'i686': 'pc',
                     'aarch64': 'virt', 'arm64': 'virt', 'armv7l': 'virt',
                     's390x': 's390-ccw-virtio', 'ppc64le': 'pseries'}

    def test_host_arch_when_nothing_says(self):
        expected = self.HOST_DEFAULTS[platform.machine()]
        self.assertEqual(expected, utils.get_machine_type(
            _image(), FakeInstance()))

    def test_unknown_arch_gives_none(self):
        self.assertIsNone(utils.get_machine_type(
            _image(hw_architecture='mips'), FakeInstance()))

    def test_sysmeta_key(self):
        self.assertEqual('hw_machine_type', utils.MACHINE_TYPE_SYSMETA_KEY)

    def test_driver_and_objects_share_one_function(self):
        """The driver's names are the rules the online migration uses."""
        self.assertIs(machine_type.get_machine_type, utils.get_machine_type)
        self.assertIs(machine_type.DEFAULT_MACHINE_TYPES,
                      utils.DEFAULT_MACHINE_TYPES)
