"""LibvirtConfigGuest: the domain XML it builds and what it refuses."""

import xml.etree.ElementTree as ET

import testtools

from nova import exception
from nova.virt.libvirt import config
from nova.virt.libvirt import guest as libvirt_guest

UUID = '0b5a3a6c-51b8-4c7e-a7b1-6f4b0c2d9e10'


def _guest_config(**kwargs):
    values = dict(virt_type='kvm', name='instance-1', uuid=UUID,
                  arch='x86_64', machine_type='q35')
    values.update(kwargs)
    return config.LibvirtConfigGuest(**values)


class LibvirtConfigGuestTestCase(testtools.TestCase):

    def test_to_xml_round_trip(self):
        root = ET.fromstring(_guest_config(memory_mib=128, vcpus=2).to_xml())
        self.assertEqual('domain', root.tag)
        self.assertEqual('kvm', root.get('type'))
        self.assertEqual('instance-1', root.findtext('name'))
        self.assertEqual(UUID, root.findtext('uuid'))
        self.assertEqual('128', root.findtext('memory'))
        self.assertEqual('MiB', root.find('memory').get('unit'))
        self.assertEqual('2', root.findtext('vcpu'))
        os_type = root.find('os/type')
        self.assertEqual('hvm', os_type.text)
        self.assertEqual('x86_64', os_type.get('arch'))
        self.assertEqual('q35', os_type.get('machine'))
        self.assertIsNone(root.find('devices/disk'))

    def test_defaults(self):
        guest = config.LibvirtConfigGuest()
        self.assertEqual((64, 1, 'hvm', None),
                         (guest.memory_mib, guest.vcpus, guest.os_type,
                          guest.machine_type))

    def test_machine_type_preserved_by_parser(self):
        for machine_type in ('pc', 'pc-q35-7.2', 'pc-q35-rhel9.2.0',
                             's390-ccw-virtio', 'a_b'):
            xml = _guest_config(machine_type=machine_type).to_xml()
            self.assertEqual(machine_type,
                             libvirt_guest.parse_machine_type(xml))

    def test_no_machine_type_omits_attribute(self):
        root = ET.fromstring(_guest_config(machine_type=None).to_xml())
        self.assertNotIn('machine', root.find('os/type').attrib)

    def test_test_driver_gets_i686_but_same_machine_type(self):
        root = ET.fromstring(
            _guest_config(virt_type='test', machine_type='pc-q35-7.2')
            .to_xml())
        self.assertEqual('i686', root.find('os/type').get('arch'))
        self.assertEqual('pc-q35-7.2', root.find('os/type').get('machine'))

    def test_hostile_machine_types_refused(self):
        for machine_type in ('pc"><x', 'a b', '', 'é', 'x' * 300, '-pc',
                             'pc\n', 'pc\n\n', "pc'"):
            guest = _guest_config(machine_type=machine_type)
            err = self.assertRaises(exception.InvalidMachineType,
                                    guest.to_xml)
            self.assertIn(UUID, str(err))
            self.assertNotIn('\n', str(err))

    def test_longest_machine_type_accepted(self):
        xml = _guest_config(machine_type='x' * 255).to_xml()
        self.assertEqual('x' * 255, libvirt_guest.parse_machine_type(xml))

    def test_name_is_escaped(self):
        root = ET.fromstring(_guest_config(name='a"<b>&\'c').to_xml())
        self.assertEqual('a"<b>&\'c', root.findtext('name'))
