"""nova-status upgrade check: is this deployment ready for the next step?

Built on oslo.upgradecheck. Exit codes: 0 every check succeeded, 1 a
warning, 2 a failure, 255 the checks could not run (bad command line or
configuration, unreachable API database); documented in
doc/source/cli/nova-status.rst.
"""

import sys

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck

from nova.cmd import common
from nova import config
from nova import context
import nova.conf
from nova import exception
from nova.db import utils as db_utils
from nova.virt.libvirt import machine_type_utils

CONF = nova.conf.CONF

# The checks could not run (oslo.upgradecheck's code for an error).
EXIT_ERROR = 255
# Hosts named per group in a result before "and N more".
HOSTS_SHOWN = 10


def _hosts(counts):
    """'h1 (3), h2 (1)' of {host: count}, cut after HOSTS_SHOWN hosts."""
    names = ['%s (%d)' % item for item in sorted(counts.items())]
    if len(names) > HOSTS_SHOWN:
        names[HOSTS_SHOWN:] = ['and %d more' % (len(names) - HOSTS_SHOWN)]
    return ', '.join(names)


def _unset_details(report):
    """Sentences giving each group of a cell's UnsetReport its remedy."""
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
    problems = {'deprecated': 'which the host reports as deprecated',
                'unsupported': 'which the host does not support'}
    return '; '.join(
        '%s: %d instance(s) recorded as %s, %s' % (
            f['host'], f['count'], f['machine_type'], problems[f['problem']])
        for f in findings) + '.'


def _result(per_cell, describe, ok_message, advice):
    """An upgradecheck Result from [(cell, result)] of a per-cell report.

    ``describe(result)`` gives a cell's sentences, or None if it is fine.
    A cell that did not answer is a failure (nothing can be said about
    it); anything described is a warning, followed by ``advice``.
    """
    code = upgradecheck.Code.SUCCESS
    unavailable, described = [], []
    for cell, result in per_cell:
        if isinstance(result, exception.CellUnavailable):
            code = upgradecheck.Code.FAILURE
            unavailable.append(result.format_message())
            continue
        sentences = describe(result)
        if sentences:
            code = max(code, upgradecheck.Code.WARNING)
            described.append('Cell %s: %s' % (cell.identity, sentences))
    if code == upgradecheck.Code.SUCCESS:
        return upgradecheck.Result(code, ok_message)
    if described:
        described.append(advice)
    return upgradecheck.Result(code, ' '.join(unavailable + described))


class Checks(upgradecheck.UpgradeCommands):
    """The upgrade checks of this release."""

    def _check_machine_type_config(self):
        """Is ``[libvirt]hw_machine_type`` well formed?

        nova-compute and nova-manage refuse to start with a malformed
        entry (nova.config.check_values); the upgrade check says so before
        they are restarted, naming the entry, as a Failure.
        """
        try:
            config.check_values()
        except exception.ConfigError as exc:
            return upgradecheck.Result(
                upgradecheck.Code.FAILURE,
                '%s. nova-compute and nova-manage refuse to start until it '
                'is fixed.' % exc.format_message())
        return upgradecheck.Result(
            upgradecheck.Code.SUCCESS,
            'Every [libvirt]hw_machine_type entry is well formed.')

    def _check_machine_type_set(self):
        """Has every instance got a recorded machine type?"""
        return _result(
            machine_type_utils.unset_machine_type_report(
                context.get_admin_context()),
            lambda report: _unset_details(report) if report.total else None,
            'Every instance has a recorded machine type.',
            'List them with nova-manage libvirt list_unset_machine_type.')

    def _check_machine_type_support(self):
        """Does each host still offer the machine types recorded on it?"""
        return _result(
            machine_type_utils.refused_machine_type_report(
                context.get_admin_context()),
            lambda findings: _refused_details(findings) if findings else None,
            'Every recorded machine type is supported, and none deprecated, '
            'where its instance is.',
            'Stop those instances and move them to a supported type with '
            'nova-manage libvirt update_machine_type (or '
            'bulk_update_machine_type) before the hosts drop it.')

    _upgrade_checks = (
        ('hw_machine_type configuration', _check_machine_type_config),
        ('hw_machine_type unset', _check_machine_type_set),
        ('hw_machine_type support', _check_machine_type_support),
    )

    def check(self):
        """Run the checks; an error is one line and EXIT_ERROR, no trace."""
        try:
            return super().check()
        except Exception as exc:
            return common.print_error(
                db_utils.describe_error(exc), EXIT_ERROR)


def main(argv=None):
    """The nova-status console script; returns its exit code.

    A command line oslo.config cannot parse exits EXIT_ERROR, not
    argparse's 2, which would read as a failed check.
    """
    argv = sys.argv[1:] if argv is None else argv
    common.quiet_logging()
    try:
        return upgradecheck.main(CONF, project='nova',
                                 upgrade_command=Checks(), argv=argv)
    except cfg.Error as exc:
        return common.print_error(str(exc).splitlines()[0], EXIT_ERROR)
    except SystemExit as exc:
        if exc.code in (0, None):
            raise
        return EXIT_ERROR
