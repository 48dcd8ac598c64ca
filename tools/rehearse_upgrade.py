"""Rehearse the upgrade that starts recording machine types, end to end.

Builds a cloud as it was before machine types were recorded (cell
databases at the baseline revision, two cells, four compute hosts,
instances in every state, libvirt domains for the instances on hosts),
then runs the real upgrade with the real commands, printing each command
and its output:

  nova-manage api_db sync / db sync      schemas to head
  nova-status upgrade check              warning: what is unrecorded
  nova-compute on each host              records from the live domains
  nova-manage db online_data_migrations  records the host-less instances
  nova-status upgrade check              success
  [libvirt]hw_machine_type = x86_64=q35  the new default
  hard reboot, unshelve, a new spawn     old guests keep pc, new get q35
  nova-manage libvirt update_machine_type, accepted and refused

and ends with a before/after table of machine types by vm_state.

Run it through tools/rehearse-upgrade.sh, which installs what it needs.
"""

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid as uuid_lib
from xml.etree import ElementTree

import libvirt
import sqlalchemy as sa

from nova.compute import vm_states
from nova import config
from nova import context
from nova.db.main import api as main_db
from nova.db import provision
from nova.db import utils as db_utils
from nova import objects

BIN = os.path.dirname(os.path.abspath(sys.executable))
HOSTS = {'cell1': ('compute1', 'compute2'), 'cell2': ('compute3', 'compute4')}
# vm_state -> share of the instances; the rest are deleted.
STATE_SHARES = [
    (vm_states.ACTIVE, 40), (vm_states.STOPPED, 15), (vm_states.PAUSED, 5),
    (vm_states.SHELVED, 5), (vm_states.SHELVED_OFFLOADED, 10),
    (vm_states.ERROR, 5), (vm_states.BUILDING, 5), ('deleted', 15),
]
# States whose instances run on a host and have a libvirt domain there.
STATES_WITH_DOMAIN = (vm_states.ACTIVE, vm_states.STOPPED, vm_states.PAUSED,
                      vm_states.SHELVED, vm_states.ERROR)
# Image properties: most images set nothing, some ask for a machine type.
IMAGES = [{}] * 6 + [{'hw_machine_type': 'q35'},
                     {'hw_machine_type': 'pc-i440fx-6.2'}]
OLD_DEFAULT = 'pc'          # what the cloud used before: the built-in default
NEW_DEFAULT = 'x86_64=q35'  # what the operator moves to
UNSET = '(unset)'


class Step:
    """Numbered section headers for the printed walk-through."""

    def __init__(self):
        self.number = 0

    def __call__(self, title):
        self.number += 1
        print('\n=== %d. %s\n' % (self.number, title), flush=True)


step = Step()


def say(text):
    print(text, flush=True)


class Cloud:
    """The rehearsal's state directory, configuration files and databases."""

    def __init__(self, state_dir, database_url, qemu):
        self.state_dir = state_dir
        self.qemu = qemu
        self.virt_type = ('kvm' if os.path.exists('/dev/kvm') else 'qemu') \
            if qemu else 'test'
        self.databases = provision.DeploymentDatabases(
            database_url, 'rehearsal', ('api', 'cell1', 'cell2'), state_dir)
        self.urls = self.databases.urls
        self.main_conf = os.path.join(state_dir, 'nova.conf')
        self.cell_uuids = {}
        # QEMU domains this rehearsal defined, removed when it ends.
        self.qemu_domains = set()

    # -- databases and configuration ---------------------------------------

    def drop_databases(self):
        """Drop the databases the rehearsal created on the server."""
        context.reset_cell_cache()
        main_db.reset()
        self.databases.drop()

    def write_config(self, hw_machine_type=''):
        """nova.conf, one file per cell and one per compute host."""
        config.write_config_file(self.main_conf, {
            'DEFAULT': {'state_path': self.state_dir},
            'database': {'connection': self.urls['cell1']},
            'api_database': {'connection': self.urls['api']},
            'libvirt': {'virt_type': self.virt_type,
                        'hw_machine_type': hw_machine_type},
            'compute': {'libvirt_connect_retries': 0},
        })
        for cell, hosts in HOSTS.items():
            config.write_config_file(
                self.cell_conf(cell),
                {'database': {'connection': self.urls[cell]}})
            for host in hosts:
                config.write_config_file(self.host_conf(host), {
                    'DEFAULT': {'host': host},
                    'libvirt': {'connection_uri': self.libvirt_uri(host)}})

    def cell_conf(self, cell):
        return os.path.join(self.state_dir, '%s.conf' % cell)

    def host_conf(self, host):
        return os.path.join(self.state_dir, '%s.conf' % host)

    def host_cell(self, host):
        return next(c for c, hosts in HOSTS.items() if host in hosts)

    def config_args(self, cell=None, host=None):
        """--config-file arguments for a command on a cell or a host."""
        cell = cell or (self.host_cell(host) if host else None)
        argv = ['--config-file', self.main_conf]
        if cell:
            argv += ['--config-file', self.cell_conf(cell)]
        if host:
            argv += ['--config-file', self.host_conf(host)]
        return argv

    def libvirt_uri(self, host):
        """Each host's own libvirt: a test driver file, or qemu:///system.

        The test driver keeps domains in the memory of the process that
        opened it, so each host's domains live in a node XML file that
        every process opening the URI loads.
        """
        if self.qemu:
            return 'qemu:///system'
        return 'test://%s' % self.node_file(host)

    def node_file(self, host):
        return os.path.join(self.state_dir, 'libvirt-%s.xml' % host)

    def load_config(self, cell=None, host=None):
        """Load the configuration of a cell/host into this process."""
        config.parse_args(self.config_args(cell, host),
                          configure_logging=False)
        context.reset_cell_cache()
        main_db.reset()

    # -- commands ------------------------------------------------------------

    def run(self, command, *argv, cell=None, host=None, expect=(0,)):
        """Run a console script, print it and its output; return its code."""
        full = [os.path.join(BIN, command)] + self.config_args(cell, host) \
            + list(argv)
        shown = [command] + (['--config-file', '%s.conf' % (host or cell)]
                             if (host or cell) else []) + list(argv)
        say('$ ' + ' '.join(shown))
        proc = subprocess.run(full, capture_output=True, text=True,
                              timeout=600)
        output = (proc.stdout + proc.stderr).rstrip()
        if output:
            say(output)
        say('(exit code %d)' % proc.returncode)
        if proc.returncode not in expect:
            raise SystemExit('rehearsal stopped: %s exited %d, expected %s'
                             % (command, proc.returncode, expect))
        return proc.returncode

    def start_compute(self, host, timeout=120):
        """Start nova-compute for ``host``, wait until it is up, stop it."""
        full = [os.path.join(BIN, 'nova-compute')] + \
            self.config_args(host=host)
        say('$ nova-compute --config-file %s.conf   (then SIGTERM once up)'
            % host)
        proc = subprocess.Popen(full, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        # Killed at the deadline even if it prints nothing more: reading
        # its output alone would wait for ever.
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        for line in proc.stdout:
            line = line.rstrip()
            say('  ' + line.split(' ', 3)[-1] if ' INFO ' in line
                or ' WARNING ' in line or ' ERROR ' in line else '  ' + line)
            if 'nova-compute running on host' in line:
                proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        watchdog.cancel()
        if code == -signal.SIGKILL:
            raise SystemExit('nova-compute on %s did not start and stop '
                             'within %d s' % (host, timeout))
        say('(exit code %d)' % code)
        if code != 0:
            raise SystemExit('nova-compute on %s exited %d' % (host, code))


class LegacyCloudBuilder:
    """Writes the cloud as Nova left it before machine types were recorded."""

    def __init__(self, cloud, count, seed=42):
        self.cloud = cloud
        self.count = count
        self.random = random.Random(seed)
        self.domains = collections.defaultdict(list)

    def build(self):
        cloud = self.cloud
        cloud.run('nova-manage', 'api_db', 'sync')
        for cell in HOSTS:
            cloud.run('nova-manage', 'db', 'sync', '--version',
                      '001_baseline', cell=cell)
            cloud.run('nova-manage', 'cell_v2', 'create_cell', '--name', cell,
                      '--database_connection', cloud.urls[cell])
        cloud.load_config()
        ctxt = context.get_admin_context()
        for cell in objects.CellMappingList.get_all(ctxt):
            cloud.cell_uuids[cell.name] = cell
        states = self._state_list()
        made = collections.Counter()
        for i, state in enumerate(states):
            cell = 'cell1' if i % 2 == 0 else 'cell2'
            self._create_instance(ctxt, cloud.cell_uuids[cell], cell, state)
            made[state] += 1
        self._add_duplicate_sysmeta(ctxt)
        for cell, hosts in HOSTS.items():
            with context.target_cell(ctxt, cloud.cell_uuids[cell]) as cctxt:
                for host in hosts:
                    # Services of the release before: version 0.
                    main_db.service_create_or_update(
                        cctxt, host, 'nova-compute', {'version': 0})
        self._define_domains()
        cloud.run('nova-manage', 'cell_v2', 'discover_hosts')
        say('Built %d instances: %s' % (len(states), ', '.join(
            '%d %s' % (n, s) for s, n in sorted(made.items()))))

    def _state_list(self):
        total = sum(share for _, share in STATE_SHARES)
        states = []
        for state, share in STATE_SHARES:
            states += [state] * max(1, round(self.count * share / total))
        self.random.shuffle(states)
        return states

    def _create_instance(self, ctxt, cell_mapping, cell, state):
        image = self.random.choice(IMAGES)
        offloaded = state in (vm_states.SHELVED_OFFLOADED,
                              vm_states.BUILDING)
        host = None if offloaded else self.random.choice(HOSTS[cell])
        sysmeta = {'image_' + k: v for k, v in image.items()}
        sysmeta.update({'image_disk_format': 'qcow2',
                        'instance_type_name': 'm1.small'})
        with context.target_cell(ctxt, cell_mapping) as cctxt:
            inst = objects.Instance(
                cctxt, uuid=str(uuid_lib.UUID(int=self.random.getrandbits(
                    128))), project_id='demo', user_id='demo',
                image_ref='image', host=host, node=host,
                vm_state=vm_states.ACTIVE if state == 'deleted' else state,
                architecture='x86_64', system_metadata=sysmeta)
            inst.create()
            objects.InstanceMapping(
                ctxt, instance_uuid=inst.uuid, cell_mapping=cell_mapping,
                project_id='demo').create()
            if state == 'deleted':
                inst.destroy()
            elif state in STATES_WITH_DOMAIN and host and \
                    self.random.random() < 0.9:
                # A few instances on hosts lost their domain: init_host
                # then falls back to resolution.
                machine = image.get('hw_machine_type', OLD_DEFAULT)
                self.domains[host].append((inst.uuid, machine, state))

    def _add_duplicate_sysmeta(self, ctxt):
        """The baseline schema let a key be stored twice; db sync fixes it."""
        cell = self.cloud.cell_uuids['cell1']
        with context.target_cell(ctxt, cell) as cctxt:
            engine = main_db.get_engine(cctxt)
            with engine.begin() as conn:
                uuid = conn.execute(sa.select(main_db.INSTANCES.c.uuid)
                                    .where(main_db.INSTANCES.c.deleted == 0)
                                    .limit(1)).scalar_one()
                for value in ('qcow2', 'raw'):
                    conn.execute(main_db.SYSMETA.insert().values(
                        instance_uuid=uuid, key='image_disk_format',
                        value=value, deleted=0))

    def _define_domains(self):
        for host, domains in sorted(self.domains.items()):
            if self.cloud.qemu:
                self._define_qemu(domains)
            else:
                self._write_node_file(host, domains)
        say('Defined %d libvirt domains on %d hosts (machine type %r, or the '
            'image\'s)' % (sum(map(len, self.domains.values())),
                           len(self.domains), OLD_DEFAULT))

    def _domain_xml(self, uuid, machine, virt_type):
        domain = ElementTree.Element('domain', type=virt_type)
        ElementTree.SubElement(domain, 'name').text = 'instance-%s' % uuid
        ElementTree.SubElement(domain, 'uuid').text = uuid
        ElementTree.SubElement(domain, 'memory', unit='MiB').text = '64'
        ElementTree.SubElement(domain, 'vcpu').text = '1'
        os_el = ElementTree.SubElement(domain, 'os')
        arch = 'i686' if virt_type == 'test' else 'x86_64'
        ElementTree.SubElement(os_el, 'type', arch=arch,
                               machine=machine).text = 'hvm'
        return domain

    def _write_node_file(self, host, domains):
        node = ElementTree.Element('node')
        for uuid, machine, _ in domains:
            node.append(self._domain_xml(uuid, machine, 'test'))
        ElementTree.ElementTree(node).write(self.cloud.node_file(host))

    def _define_qemu(self, domains):
        conn = libvirt.open('qemu:///system')
        try:
            for uuid, machine, _ in domains:
                conn.defineXML(ElementTree.tostring(self._domain_xml(
                    uuid, machine, self.cloud.virt_type), encoding='unicode'))
                self.cloud.qemu_domains.add(uuid)
        finally:
            conn.close()


def machine_types_by_state(cloud):
    """Counter of (vm_state, recorded machine type) over every cell."""
    cloud.load_config()
    ctxt = context.get_admin_context()
    counts = collections.Counter()
    for cell in objects.CellMappingList.get_all(ctxt):
        with context.target_cell(ctxt, cell) as cctxt:
            engine = main_db.get_engine(cctxt)
            inst, meta = main_db.INSTANCES, main_db.SYSMETA
            # SELECT i.vm_state, m.value, COUNT(*) FROM instances i
            #   LEFT JOIN instance_system_metadata m ON m.instance_uuid =
            #     i.uuid AND m.key = 'hw_machine_type' AND m.deleted = 0
            #  WHERE i.deleted = 0 GROUP BY i.vm_state, m.value
            query = (sa.select(inst.c.vm_state, meta.c.value, sa.func.count())
                     .select_from(inst.outerjoin(meta, sa.and_(
                         meta.c.instance_uuid == inst.c.uuid,
                         meta.c.key == 'hw_machine_type',
                         meta.c.deleted == 0)))
                     .where(inst.c.deleted == 0)
                     .group_by(inst.c.vm_state, meta.c.value))
            with engine.connect() as conn:
                for state, value, count in conn.execute(query):
                    counts[(state, value or UNSET)] += count
    return counts


def print_before_after(before, after):
    keys = sorted(set(before) | set(after))
    width = max(len(k[1]) for k in keys)
    say('%-18s %-*s %7s %7s' % ('vm_state', width, 'machine type',
                                'before', 'after'))
    for key in keys:
        say('%-18s %-*s %7d %7d' % (key[0], width, key[1],
                                    before.get(key, 0), after.get(key, 0)))


def is_pc(machine_type):
    """True for the i440FX family: the alias or a current versioned type."""
    return machine_type == OLD_DEFAULT or (
        machine_type or '').startswith('pc-i440fx-7')


def pick_instance(cloud, state, machine_type=None, host_required=True):
    """(cell, UUID) of a live instance in ``state``.

    ``machine_type`` is the recorded value wanted, or a predicate on it.
    """
    cloud.load_config()
    ctxt = context.get_admin_context()
    for cell in objects.CellMappingList.get_all(ctxt):
        with context.target_cell(ctxt, cell) as cctxt:
            for inst in objects.InstanceList.iter_by_filters(
                    cctxt, {'vm_state': state},
                    expected_attrs=['system_metadata']):
                if host_required and not inst.host:
                    continue
                value = inst.system_metadata.get('hw_machine_type')
                if callable(machine_type) and not machine_type(value):
                    continue
                if isinstance(machine_type, str) and value != machine_type:
                    continue
                return cell.name, inst.uuid
    raise SystemExit('no %s instance found for the demonstration' % state)


def demonstrate_new_default(cloud):
    """Hard reboot and unshelve keep old guests' type; a spawn gets q35."""
    from nova.compute import manager as compute_manager
    rows = []

    def recorded(cctxt, uuid):
        return objects.Instance.get_by_uuid(
            cctxt, uuid, expected_attrs=['system_metadata']
        ).system_metadata.get('hw_machine_type')

    cell, uuid = pick_instance(cloud, vm_states.ACTIVE, is_pc)
    host = _host_of(cloud, cell, uuid)
    cloud.load_config(host=host)
    ctxt = context.get_admin_context()
    cell_mapping = objects.CellMapping.get_by_uuid(
        ctxt, cloud.cell_uuids[cell].uuid)
    with context.target_cell(ctxt, cell_mapping) as cctxt:
        manager = compute_manager.ComputeManager(host=host)
        inst = objects.Instance.get_by_uuid(cctxt, uuid,
                                            expected_attrs=['system_metadata'])
        manager.reboot_instance(cctxt, inst, reboot_type='HARD')
        rows.append(('hard reboot', uuid, host, recorded(cctxt, uuid),
                     manager.driver.get_instance_machine_type(inst)))

    cell, uuid = pick_instance(cloud, vm_states.SHELVED_OFFLOADED,
                               host_required=False)
    target = HOSTS[cell][1]
    cloud.load_config(host=target)
    with context.target_cell(ctxt, cell_mapping_for(cloud, ctxt, cell)) \
            as cctxt:
        manager = compute_manager.ComputeManager(host=target)
        inst = objects.Instance.get_by_uuid(cctxt, uuid,
                                            expected_attrs=['system_metadata'])
        before = inst.system_metadata.get('hw_machine_type')
        # Offloaded, it had no domain: the unshelve starts one.
        cloud.qemu_domains.add(uuid)
        manager.unshelve_instance(cctxt, inst)
        rows.append(('unshelve (was %s)' % before, uuid, target,
                     recorded(cctxt, uuid),
                     manager.driver.get_instance_machine_type(inst)))

        inst = objects.Instance(
            cctxt, uuid=str(uuid_lib.uuid4()), project_id='demo',
            user_id='demo', image_ref='image', vm_state=vm_states.BUILDING,
            architecture='x86_64')
        inst.create()
        cloud.qemu_domains.add(inst.uuid)
        objects.InstanceMapping(ctxt, instance_uuid=inst.uuid,
                                cell_mapping=cell_mapping_for(cloud, ctxt,
                                                              cell),
                                project_id='demo').create()
        manager.build_and_run_instance(
            cctxt, inst, objects.ImageMeta.from_dict({'id': 'image'}))
        rows.append(('new spawn', inst.uuid, target,
                     recorded(cctxt, inst.uuid),
                     manager.driver.get_instance_machine_type(inst)))
    say('%-22s %-36s %-9s %-15s %s' % ('operation', 'instance', 'host',
                                       'recorded', 'domain XML machine'))
    for row in rows:
        say('%-22s %-36s %-9s %-15s %s' % row)
    return rows


def cell_mapping_for(cloud, ctxt, cell):
    return objects.CellMapping.get_by_uuid(ctxt, cloud.cell_uuids[cell].uuid)


def _host_of(cloud, cell, uuid):
    cloud.load_config()
    ctxt = context.get_admin_context()
    with context.target_cell(ctxt, cell_mapping_for(cloud, ctxt, cell)) \
            as cctxt:
        return objects.Instance.get_by_uuid(cctxt, uuid).host


def rehearse(cloud, count):
    say('State directory: %s. Every command below also reads nova.conf '
        'there; "--config-file cellN.conf" or "computeN.conf" adds the '
        'cell database or the host\'s name and libvirt URI.'
        % cloud.state_dir)
    step('Build the cloud as it was before recording (baseline schema)')
    cloud.write_config()
    LegacyCloudBuilder(cloud, count).build()
    say('Databases: %s' % ', '.join(
        '%s=%s' % (k, db_utils.mask_url(v)) for k, v in cloud.urls.items()))

    step('Upgrade the schemas')
    cloud.run('nova-manage', 'api_db', 'sync')
    for cell in HOSTS:
        cloud.run('nova-manage', 'db', 'sync', cell=cell)
    before = machine_types_by_state(cloud)

    step('Check the upgrade: machine types are not recorded yet')
    cloud.run('nova-status', 'upgrade', 'check', expect=(1,))

    step('Start nova-compute on every host: it records from live domains')
    for cell, hosts in HOSTS.items():
        for host in hosts:
            cloud.start_compute(host)

    step('Record the host-less instances: online data migrations')
    cloud.run('nova-manage', 'db', 'online_data_migrations')

    step('Check the upgrade again')
    cloud.run('nova-status', 'upgrade', 'check')
    cloud.run('nova-manage', 'libvirt', 'machine_type_summary')

    step('Change the default: [libvirt]hw_machine_type = %s' % NEW_DEFAULT)
    cloud.write_config(hw_machine_type=NEW_DEFAULT)
    say('nova.conf now has [libvirt] hw_machine_type = %s' % NEW_DEFAULT)
    demo = demonstrate_new_default(cloud)

    step('Change one stopped instance with nova-manage')
    _, uuid = pick_instance(cloud, vm_states.STOPPED, 'pc-i440fx-6.2')
    cloud.run('nova-manage', 'libvirt', 'update_machine_type', uuid,
              'pc-i440fx-7.2')
    _, stopped_pc = pick_instance(cloud, vm_states.STOPPED, is_pc)
    cloud.run('nova-manage', 'libvirt', 'update_machine_type', stopped_pc,
              'q35', expect=(4,))
    _, active = pick_instance(cloud, vm_states.ACTIVE)
    cloud.run('nova-manage', 'libvirt', 'update_machine_type', active,
              'pc-q35-7.2', expect=(3,))
    cloud.run('nova-manage', 'libvirt', 'get_machine_type', uuid)

    step('Machine types by vm_state, before and after the upgrade')
    after = machine_types_by_state(cloud)
    print_before_after(before, after)
    return before, after, demo


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--instances', type=int, default=200,
                        help='Number of instances to build (default 200).')
    parser.add_argument('--database-url', metavar='URL',
                        help='A MariaDB/MySQL or PostgreSQL server URL '
                             '(user allowed to create databases) instead '
                             'of SQLite files.')
    parser.add_argument('--qemu', action='store_true',
                        help='Use the real libvirtd with QEMU '
                             '(qemu:///system) instead of the test driver.')
    parser.add_argument('--keep', action='store_true',
                        help='Keep the state directory for inspection.')
    parser.add_argument('--summary-json', metavar='PATH',
                        help='Also write the final counts as JSON here.')
    args = parser.parse_args()
    if args.instances < 10:
        parser.error('--instances must be at least 10')
    state_dir = tempfile.mkdtemp(prefix='nova-rehearsal-')
    started = time.monotonic()
    cloud = Cloud(state_dir, args.database_url, args.qemu)
    try:
        before, after, demo = rehearse(cloud, args.instances)
        if args.summary_json:
            with open(args.summary_json, 'w') as f:
                json.dump({'before': _jsonable(before),
                           'after': _jsonable(after),
                           'demo': [list(row) for row in demo]}, f, indent=1)
    finally:
        if args.qemu:
            _undefine(cloud.qemu_domains)
        if args.keep:
            say('\nState kept in %s' % state_dir)
        else:
            shutil.rmtree(state_dir, ignore_errors=True)
            cloud.drop_databases()
    say('\nRehearsal finished in %.1f s.' % (time.monotonic() - started))


def _jsonable(counts):
    return [[state, machine, n] for (state, machine), n in
            sorted(counts.items())]


def _undefine(uuids):
    """Remove the QEMU domains the rehearsal defined, running or not."""
    conn = libvirt.open('qemu:///system')
    try:
        for domain in conn.listAllDomains(0):
            if domain.UUIDString() in uuids:
                if domain.isActive():
                    domain.destroy()
                domain.undefine()
    finally:
        conn.close()


if __name__ == '__main__':
    main()
