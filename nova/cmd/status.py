"""nova-status upgrade check: is this deployment ready for the next step?

Built on oslo.upgradecheck. Exit codes: 0 every check succeeded, 1 a
warning, 2 a failure, 255 the checks could not run (bad command line or
configuration, unreachable API database); documented in
doc/source/cli/nova-status.rst. With ``--json`` each check also carries
its counts, per cell, under ``data``.
"""

import json
import sys

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck

from nova.cmd import common
from nova import config
from nova import context
import nova.conf
from nova import exception
from nova.db import transactions
from nova.db import utils as db_utils
from nova.virt.libvirt import machine_type_utils

CONF = nova.conf.CONF

# The checks could not run (oslo.upgradecheck's code for an error).
EXIT_ERROR = 255
# Hosts named per group in a result before "and N more".
HOSTS_SHOWN = 10
# Drifting instances named in a result before "and N more".
DRIFT_SHOWN = 10


class Result(upgradecheck.Result):
    """An upgradecheck Result with the check's counts for ``--json``.

    ``data`` is a JSON-ready dict, printed under the check's ``data`` key
    by ``upgrade check --json`` (the table shows ``details`` only).
    """

    def __init__(self, code, details=None, data=None):
        super().__init__(code, details)
        self.data = {} if data is None else data


def _cell_json(cell):
    return {'cell_uuid': cell.uuid, 'cell_name': cell.name}


def _host_counts(counts):
    """[{host, count}] of {host: count}, by host."""
    return [{'host': host, 'count': count}
            for host, count in sorted(counts.items())]


def _hosts(counts):
    """'h1 (3), h2 (1)' of {host: count}, cut after HOSTS_SHOWN hosts."""
    names = ['%s (%d)' % item for item in sorted(counts.items())]
    if len(names) > HOSTS_SHOWN:
        names[HOSTS_SHOWN:] = ['and %d more' % (len(names) - HOSTS_SHOWN)]
    return ', '.join(names)


def _unset_details(report):
    """Sentences giving each group of a cell's UnsetReport its remedy.

    None when the cell has no unrecorded instance.
    """
    if not report.total:
        return None
    parts = ['%d instance(s) have no recorded machine type' % report.total]
    if report.restart:
        parts.append('restart nova-compute on %s to record theirs'
                     % _hosts(report.restart))
    if report.outdated:
        parts.append('nova-compute on %s predates machine type recording: '
                     'upgrade it and restart it' % _hosts(report.outdated))
    if report.unknown:
        parts.append('no nova-compute service is recorded for %s: start an '
                     'upgraded nova-compute there' % _hosts(report.unknown))
    if report.hostless:
        parts.append('%d instance(s) without a host: run nova-manage db '
                     'online_data_migrations' % report.hostless)
    return '; '.join(parts) + '.'


def _refused_details(findings):
    """Sentences about one cell's recorded types their host refuses."""
    if not findings:
        return None
    problems = {'deprecated': 'which the host reports as deprecated',
                'unsupported': 'which the host does not support'}
    return '; '.join(
        '%s: %d instance(s) recorded as %s, %s' % (
            f['host'], f['count'], f['machine_type'], problems[f['problem']])
        for f in findings) + '.'


def _unset_data(report):
    """The JSON counts of one cell's UnsetReport."""
    return {'total': report.total, 'hostless': report.hostless,
            'restart': _host_counts(report.restart),
            'outdated': _host_counts(report.outdated),
            'unknown': _host_counts(report.unknown)}


def _refused_data(findings):
    """The JSON counts of one cell's refused machine types."""
    return {'total': sum(f['count'] for f in findings),
            'findings': [dict(f) for f in findings]}


def _drift_by_host(drifts):
    """{host: count} of one cell's drift rows."""
    counts = {}
    for drift in drifts:
        counts[drift['host']] = counts.get(drift['host'], 0) + 1
    return counts


def _drift_details(drifts):
    """Sentences about one cell's drifting instances (None if none)."""
    if not drifts:
        return None
    shown = ', '.join('%s on %s (recorded %s, running %s)' % (
        d['instance_uuid'], d['host'], d['recorded'], d['running'])
        for d in drifts[:DRIFT_SHOWN])
    if len(drifts) > DRIFT_SHOWN:
        shown += ', and %d more' % (len(drifts) - DRIFT_SHOWN)
    return ('%d instance(s) run another machine type than recorded, on '
            '%s: %s.' % (len(drifts), _hosts(_drift_by_host(drifts)), shown))


def _drift_data(drifts):
    """The JSON counts (and instances) of one cell's drift rows."""
    return {'total': len(drifts),
            'hosts': _host_counts(_drift_by_host(drifts)),
            'instances': [dict(d, found_at=d['found_at'].isoformat()
                               if d['found_at'] is not None else None)
                          for d in drifts]}


def _result(per_cell, describe, ok_message, advice, cell_data):
    """A Result from [(cell, result)] of a per-cell report.

    ``describe(result)`` gives a cell's sentences, or None if it is fine.
    A cell that did not answer is a failure (nothing can be said about
    it); anything described is a warning, followed by ``advice``.
    ``cell_data(result)`` gives a cell's counts for the JSON ``data``:
    {"total": N in all, "cells": [counts with cell_uuid, cell_name and
    total], "errors": [{cell_uuid, cell_name, error}]}.
    """
    code = upgradecheck.Code.SUCCESS
    unavailable, described = [], []
    data = {'total': 0, 'cells': [], 'errors': []}
    for cell, result in per_cell:
        if isinstance(result, exception.CellUnavailable):
            code = upgradecheck.Code.FAILURE
            unavailable.append(result.format_message())
            data['errors'].append(dict(_cell_json(cell),
                                       error=result.format_message()))
            continue
        counts = cell_data(result)
        data['cells'].append(dict(_cell_json(cell), **counts))
        data['total'] += counts['total']
        sentences = describe(result)
        if sentences is not None:
            code = max(code, upgradecheck.Code.WARNING)
            described.append('Cell %s: %s' % (cell.identity, sentences))
    if code == upgradecheck.Code.SUCCESS:
        return Result(code, ok_message, data)
    if described:
        described.append(advice)
    return Result(code, ' '.join(unavailable + described), data)


def _cell_check(report, describe, ok_message, advice, cell_data):
    """An upgrade check method: _result of a per-cell report.

    ``report`` names the machine_type_utils.CHECK_REPORTS entry giving
    each cell's result; the other arguments are _result's.
    """
    def check(self):
        return _result(self._per_cell(report), describe, ok_message, advice,
                       cell_data)
    check.__doc__ = 'The check of the %s report of every cell.' % report
    return check


class Checks(upgradecheck.UpgradeCommands):
    """The upgrade checks of this release."""

    # What check() gathered from every cell at once, while it runs.
    _reports = None

    def _per_cell(self, name):
        """[(cell, its ``name`` report or CellUnavailable)] of every cell.

        From what check() gathered for all the checks at once, so that a
        cell that does not answer delays the command by one cell
        time-out; a check run alone asks the cells itself.
        """
        reports = self._reports
        if reports is None:
            reports = machine_type_utils.upgrade_check_reports(
                context.get_admin_context(), [name])
        return [(cell, result if isinstance(
                    result, exception.CellUnavailable) else result[name])
                for cell, result in reports]

    def _check_machine_type_config(self):
        """Is ``[libvirt]hw_machine_type`` well formed?

        nova-compute and nova-manage refuse to start with a malformed
        entry (nova.config.check_values); the upgrade check says so before
        they are restarted, naming the entry, as a Failure.
        """
        try:
            config.check_values()
        except exception.ConfigError as exc:
            return Result(
                upgradecheck.Code.FAILURE,
                '%s. nova-compute and nova-manage refuse to start until it '
                'is fixed.' % exc.format_message(),
                {'error': exc.format_message()})
        return Result(
            upgradecheck.Code.SUCCESS,
            'Every [libvirt]hw_machine_type entry is well formed.',
            {'error': None})

    # The checks of a per-cell report: (name of its report in
    # machine_type_utils.CHECK_REPORTS, describe, success message,
    # advice, cell data), see _result. Has every instance got a recorded
    # machine type?
    _check_machine_type_set = _cell_check(
        'unset', _unset_details,
        'Every instance has a recorded machine type.',
        'List them with nova-manage libvirt list_unset_machine_type.',
        _unset_data)

    # Does each host still offer the machine types recorded on it?
    _check_machine_type_support = _cell_check(
        'refused', _refused_details,
        'Every recorded machine type is supported, and none deprecated, '
        'where its instance is.',
        'Stop those instances and move them to a supported type with '
        'nova-manage libvirt update_machine_type (or '
        'bulk_update_machine_type) before the hosts drop it.',
        _refused_data)

    # Does every live domain run the machine type recorded for it?
    # nova-compute compares them at start-up and stores the instances
    # whose domain runs another type (db.machine_type_drift_replace).
    _check_machine_type_drift = _cell_check(
        'drift', _drift_details,
        'Every live domain runs the machine type recorded for its '
        'instance (as each nova-compute found at its last start).',
        'Look at each with nova-manage libvirt get_machine_type '
        'INSTANCE_UUID and, on its host, virsh dumpxml INSTANCE_UUID '
        '(the machine attribute of <type>). Then either record what '
        'runs with nova-manage libvirt update_machine_type '
        'INSTANCE_UUID MACHINE_TYPE --force, or hard reboot the '
        'instance to redefine its domain from the record.',
        _drift_data)

    _upgrade_checks = (
        ('hw_machine_type configuration', _check_machine_type_config),
        ('hw_machine_type unset', _check_machine_type_set),
        ('hw_machine_type support', _check_machine_type_support),
        ('hw_machine_type drift', _check_machine_type_drift),
    )

    def check(self):
        """Run the checks; an error is one line and EXIT_ERROR, no trace.

        The table is oslo.upgradecheck's. With ``--json`` its document
        ({"name", "checks": [{"check", "result", "details"}]}) gets each
        check's counts under "data" too.
        """
        try:
            self._reports = machine_type_utils.upgrade_check_reports(
                context.get_admin_context())
            results = [(name, func(self))
                       for name, func in self._upgrade_checks]
        except Exception as exc:
            return common.print_error(
                db_utils.describe_error(exc), EXIT_ERROR)
        finally:
            self._reports = None
        if _json_requested():
            print(json.dumps({
                'name': str(self.display_title),
                'checks': [{'check': name, 'result': int(result.code),
                            'details': result.details,
                            'data': getattr(result, 'data', {})}
                           for name, result in results]}, indent=2))
            return max([upgradecheck.Code.SUCCESS] +
                       [result.code for _, result in results])
        # oslo.upgradecheck prints the table of the results just computed.
        table = upgradecheck.UpgradeCommands()
        table._upgrade_checks = tuple(
            (name, lambda _self, result=result: result)
            for name, result in results)
        return table.check()


def _json_requested():
    """Was ``upgrade check --json`` given (oslo.upgradecheck's option)?"""
    conf = upgradecheck.CONF
    return bool(conf is not None and hasattr(conf, 'command')
                and getattr(conf.command, 'json', False))


def main(argv=None):
    """The nova-status console script; returns its exit code.

    A command line oslo.config cannot parse exits EXIT_ERROR, not
    argparse's 2, which would read as a failed check.
    """
    argv = sys.argv[1:] if argv is None else argv
    common.quiet_logging()
    # A command's transactions: plain engines, no ORM (nova.db.transactions).
    transactions.use_direct(True)
    try:
        return upgradecheck.main(CONF, project='nova',
                                 upgrade_command=Checks(), argv=argv)
    except cfg.Error as exc:
        return common.print_error(str(exc).splitlines()[0], EXIT_ERROR)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        return EXIT_ERROR


def console_main():
    """The nova-status console script: main(), exited at once."""
    common.console_script(main)
