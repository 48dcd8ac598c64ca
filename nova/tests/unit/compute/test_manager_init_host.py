"""init_host: the service row, the host's machine types, and recording
every unrecorded instance of the host, in bulk and race-safe.
"""

from nova.compute import vm_states
from nova.db.main import api as db
from nova import exception
from nova import objects
from nova.objects import service as service_obj
from nova.tests.unit import compute as base

KEY = base.KEY
# Every vm_state an instance with a host (and a domain) can be in.
STATES_WITH_DOMAIN = (vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
                      vm_states.SUSPENDED, vm_states.SHELVED,
                      vm_states.RESCUED, vm_states.RESIZED, vm_states.ERROR)


class InitHostTestCase(base.ComputeTestCase):

    def on_host(self, domain=None, host='compute1', **values):
        """An unrecorded instance of ``host``, with a domain if given."""
        values.setdefault('vm_state', vm_states.ACTIVE)
        instance = self.create_instance(host=host, node=host, **values)
        if domain is not None:
            self.define_domain(instance, domain,
                               start=values['vm_state'] == vm_states.ACTIVE)
        return instance


class RecordingTestCase(InitHostTestCase):

    def test_records_every_vm_state_from_live_domains(self):
        instances = {state: self.on_host('pc-i440fx-2.%d' % i, vm_state=state)
                     for i, state in enumerate(STATES_WITH_DOMAIN)}
        self.compute.init_host()
        for i, state in enumerate(STATES_WITH_DOMAIN):
            self.assertEqual(['pc-i440fx-2.%d' % i],
                             self.machine_type_rows(instances[state]), state)

    def test_falls_back_to_resolution_without_domain(self):
        self.flags(hw_machine_type=['x86_64=pc-q35-6.2'], group='libvirt')
        from_image = self.on_host(
            vm_state=vm_states.STOPPED,
            system_metadata={'image_hw_machine_type': 'q35'})
        from_image_arch = self.on_host(
            vm_state=vm_states.ERROR,
            system_metadata={'image_hw_architecture': 'aarch64'})
        from_conf = self.on_host(vm_state=vm_states.SHELVED)
        from_built_in = self.on_host(architecture='ppc64le')
        self.compute.init_host()
        for expected, instance in (('q35', from_image),
                                   ('virt', from_image_arch),
                                   ('pc-q35-6.2', from_conf),
                                   ('pseries', from_built_in)):
            self.assertEqual([expected], self.machine_type_rows(instance))

    def test_live_domain_wins_over_image_and_configuration(self):
        self.flags(hw_machine_type=['x86_64=q35'], group='libvirt')
        instance = self.on_host('pc-i440fx-2.11', system_metadata={
            'image_hw_machine_type': 'pc-q35-6.2'})
        self.compute.init_host()
        self.assertEqual(['pc-i440fx-2.11'], self.machine_type_rows(instance))

    def test_recorded_instance_left_alone(self):
        instance = self.on_host('pc-i440fx-2.11',
                                system_metadata={KEY: 'pc-q35-5.2'})
        self.compute.init_host()
        self.assertEqual(['pc-q35-5.2'], self.machine_type_rows(instance))
        self.assertDomainMachineType('pc-i440fx-2.11', instance)

    def test_only_this_hosts_live_instances(self):
        other_host = self.on_host('pc', host='compute2')
        offloaded = self.create_instance(
            host=None, vm_state=vm_states.SHELVED_OFFLOADED)
        deleted = self.on_host('pc')
        deleted.destroy()
        self.compute.init_host()
        for instance in (other_host, offloaded):
            self.assertEqual([], self.machine_type_rows(instance))
        self.assertEqual({}, db.instance_system_metadata_get_many(
            self.ctxt, [deleted.uuid])[deleted.uuid])

    def test_unresolvable_instances_logged_and_skipped(self):
        no_default = self.on_host(architecture='mips')
        invalid = self.on_host(
            system_metadata={'image_hw_machine_type': 'pc q35'})
        good = self.on_host('pc-q35-5.2')
        self.compute.init_host()
        self.assertEqual([], self.machine_type_rows(no_default))
        self.assertEqual([], self.machine_type_rows(invalid))
        self.assertEqual(['pc-q35-5.2'], self.machine_type_rows(good))
        self.assertIn(no_default.uuid, self.logger.output)
        self.assertIn(invalid.uuid, self.logger.output)
        # The service started all the same.
        objects.Service.get_by_host_and_binary(self.ctxt, 'compute1',
                                               'nova-compute')

    def test_domain_naming_no_machine_type_is_reported_not_guessed(self):
        """A domain whose XML has no machine attribute: what the guest
        runs is unknown, so nothing is recorded (the default would be a
        guess), and the operator is told."""
        [instance] = self.legacy_instances(None)
        self.assertIsNone(self.domain_machine_type(instance))
        self.compute.init_host()
        self.assertEqual([], self.machine_type_rows(instance))
        self.assertIn('Instance %s (stopped) stays unrecorded: its domain '
                      'names no machine type' % instance.uuid,
                      self.logger.output)

    def test_logs_how_many_live_and_computed(self):
        self.on_host('pc')
        self.on_host('q35', vm_state=vm_states.STOPPED)
        self.on_host()
        self.compute.init_host()
        self.assertIn('3 instance(s) on host compute1: 2 from their live '
                      'domains, 1 computed', self.logger.output)

    def test_second_start_writes_no_record(self):
        self.on_host('pc')
        self.compute.init_host()
        sql = self.useFixture(base.SQLRecorder())
        self.compute.init_host()
        self.assertFalse(any(s.startswith('INSERT INTO instance_system')
                             for s in sql.statements()))

    def test_unreachable_libvirt_records_nothing(self):
        instance = self.on_host()
        self.flags(connection_uri='qemu+unix:///system?socket=/nonexistent',
                   group='libvirt')
        compute = self.compute.__class__('compute1')
        self.assertRaises(exception.HypervisorUnavailable, compute.init_host)
        self.assertEqual([], self.machine_type_rows(instance))
        self.assertRaises(exception.ServiceNotFound,
                          objects.Service.get_by_host_and_binary, self.ctxt,
                          'compute1', 'nova-compute')


class ServiceAndHostTestCase(InitHostTestCase):

    def test_registers_the_service_once(self):
        self.compute.init_host()
        self.compute.init_host()
        services = objects.ServiceList.get_by_binary(self.ctxt,
                                                     'nova-compute')
        self.assertEqual([('compute1', service_obj.SERVICE_VERSION)],
                         [(s.host, s.version) for s in services])

    def test_writes_the_machine_types_the_host_supports(self):
        self.useFixture(base.QemuCapabilities(self.compute.driver))
        self.compute.init_host()
        self.compute.init_host()
        rows = {(r['arch'], r['name']): (r['canonical'], r['deprecated'])
                for r in db.host_machine_types_get(self.ctxt, 'compute1')}
        self.assertEqual(9, len(rows))
        self.assertEqual(('pc-q35-7.2', False), rows[('x86_64', 'q35')])
        self.assertEqual((None, True), rows[('x86_64', 'pc-i440fx-1.5')])
        self.assertEqual(('pc-i440fx-7.2', False), rows[('i686', 'pc')])

    def test_test_driver_lists_no_machine_types(self):
        self.compute.init_host()
        self.assertEqual([], db.host_machine_types_get(self.ctxt, 'compute1'))


class StatementCountTestCase(InitHostTestCase):

    def start_with(self, host, count):
        """Start ``host`` with ``count`` unrecorded instances, half of them
        with a domain; return the SQL statements init_host sent.
        """
        for i in range(count):
            self.on_host('pc' if i % 2 else None, host=host,
                         system_metadata={'image_hw_machine_type': 'q35'})
        with base.SQLRecorder() as sql:
            self.compute.__class__(host).init_host()
        return sql.statements()

    def test_constant_whatever_the_number_of_instances(self):
        few = self.start_with('host5', 5)
        many = self.start_with('host50', 50)
        self.assertEqual(len(few), len(many), (few, many))
        records = [s for s in many
                   if s.startswith('INSERT INTO instance_system_metadata')]
        self.assertEqual(2, len(records))
        self.assertEqual([], db.instance_get_all_by_host_without_sysmeta(
            self.ctxt, 'host50', KEY, ()))


class RaceTestCase(InitHostTestCase):
    """Spawn and a (re)starting init_host recording the same instance."""

    def test_init_host_between_define_and_active_save(self):
        # The restarted service takes the old one for dead: the build it
        # finds in flight is cut off (ERROR, domain kept, recorded from
        # it), and the old process's late save is refused.
        instance = self.create_instance()
        restarted = self.compute.__class__('compute1')
        spawn = self.compute.driver.spawn

        def spawn_then_restart(*args):
            machine_type = spawn(*args)
            # The domain exists, the instance is not yet ACTIVE.
            restarted.init_host()
            self.assertEqual(['q35'], self.machine_type_rows(instance))
            return machine_type

        self.compute.driver.spawn = spawn_then_restart
        self.assertRaises(exception.UnexpectedTaskStateError,
                          self.compute.build_and_run_instance, self.ctxt,
                          instance, self.image(hw_machine_type='q35'))
        self.assertState(instance, vm_states.ERROR, host='compute1')
        self.assertEqual(['q35'], self.machine_type_rows(instance))
        self.assertTrue(self.domain_is_running(instance))

    def test_spawn_between_listing_and_computed_insert(self):
        self.flags(hw_machine_type=['x86_64=pc-i440fx-2.11'], group='libvirt')
        instance = self.create_instance(host='compute1', node='compute1')
        restarted = self.compute.__class__('compute1')
        listing = restarted.driver.get_instance_machine_types

        def list_then_spawn(*args):
            # init_host found the instance without record and without a
            # domain; the build completes before it writes its guess.
            domains = listing(*args)
            self.compute.build_and_run_instance(
                self.ctxt, instance, self.image(hw_machine_type='q35'))
            return domains

        restarted.driver.get_instance_machine_types = list_then_spawn
        restarted.init_host()
        self.assertEqual(['q35'], self.machine_type_rows(instance))
        self.assertIn('0 from their live domains, 1 computed',
                      self.logger.output)


class UnrecordedInstancesQueryTestCase(InitHostTestCase):
    """db.instance_get_all_by_host_without_sysmeta."""

    def query(self, host='compute1'):
        return db.instance_get_all_by_host_without_sysmeta(
            self.ctxt, host, KEY, ('image_hw_machine_type', 'image_x'))

    def test_returns_only_unrecorded_with_the_asked_keys(self):
        first = self.on_host(system_metadata={
            'image_hw_machine_type': 'q35', 'image_x': 'x', 'other': 'o'})
        second = self.on_host(vm_state=vm_states.ERROR, architecture='i686')
        self.on_host(system_metadata={KEY: 'pc'})
        self.on_host(host='compute2')
        self.assertEqual(
            [{'uuid': first.uuid, 'vm_state': 'active',
              'architecture': 'x86_64', 'image_ref': 'image',
              'system_metadata': {'image_hw_machine_type': 'q35',
                                  'image_x': 'x'}},
             {'uuid': second.uuid, 'vm_state': 'error',
              'architecture': 'i686', 'image_ref': 'image',
              'system_metadata': {}}],
            self.query())

    def test_removed_record_counts_as_none(self):
        instance = self.on_host(system_metadata={KEY: 'pc'})
        instance = self.reload(instance)
        del instance.system_metadata[KEY]
        instance.save()
        self.assertEqual([instance.uuid], [r['uuid'] for r in self.query()])

    def test_deleted_instances_left_out(self):
        self.on_host().destroy()
        self.assertEqual([], self.query())
