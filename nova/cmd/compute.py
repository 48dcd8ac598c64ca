"""nova-compute: the compute service of one host.

Start-up parses the configuration, opens libvirt (retrying as ``[compute]``
says), then runs ``ComputeManager.init_host``, which registers the service
and records the machine type of the host's instances. The service then
stays up until SIGTERM or SIGINT.

Exit codes: 0 stopped by SIGTERM or SIGINT; 1 invalid configuration,
libvirt unreachable after the last retry, a cell database that
``nova-manage db sync`` has not brought to this code's revision (nothing
is written), or start-up failed. Every error is one line on stderr.
"""

import logging
import signal
import sys
import threading

from nova.cmd import common
from nova.compute import manager as compute_manager
from nova import config
import nova.conf
from nova import exception

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_on_signals(stop):
    """Make SIGTERM and SIGINT set the ``stop`` event instead of killing."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda _signum, _frame: stop.set())


def connect_libvirt(driver, retries, interval, stop):
    """Open libvirt, retrying up to ``retries`` times, with back-off.

    The first retry waits ``interval`` seconds and each further one twice
    as long. Every failure prints one line naming the URI. Returns True
    once connected; False when the last attempt failed or ``stop`` was set
    while waiting. Nothing is recorded before libvirt answers, so no
    machine type is ever guessed for an instance whose domain could not be
    read.
    """
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            driver.init_host()
            return True
        except exception.HypervisorUnavailable as exc:
            outcome = ('giving up' if attempt == attempts
                       else 'retrying in %gs' % interval)
            common.print_error('%s (attempt %d of %d, %s)' % (
                exc.format_message(), attempt, attempts, outcome))
        if attempt == attempts or stop.wait(interval):
            return False
        interval *= 2


def start(argv):
    """Run nova-compute until SIGTERM or SIGINT; return the exit code."""
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        config.parse_args(argv)
    except exception.ConfigError as exc:
        return common.print_error(exc.format_message())
    manager = compute_manager.ComputeManager(CONF.host)
    if not connect_libvirt(manager.driver,
                           CONF.compute.libvirt_connect_retries,
                           CONF.compute.libvirt_connect_retry_interval, stop):
        return 0 if stop.is_set() else 1
    try:
        manager.init_host()
    except Exception as exc:
        LOG.debug('nova-compute start-up failed', exc_info=True)
        return common.print_error('nova-compute on host %s could not start: '
                                  '%s' % (manager.host, exc))
    LOG.info('nova-compute running on host %s with libvirt at %s',
             manager.host, manager.driver.uri)
    stop.wait()
    LOG.info('nova-compute on host %s stopping on signal', manager.host)
    return 0


def main(argv=None):
    """Console script entry point: exit with start()'s code."""
    sys.exit(start(sys.argv[1:] if argv is None else argv))
