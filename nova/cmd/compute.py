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

from nova.cmd import common
from nova.compute import manager as compute_manager
from nova import config
import nova.conf
from nova import exception

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """SIGTERM and SIGINT, taken when the service is ready to stop.

    Both are blocked (in every thread: the mask is inherited) and waited
    for with sigtimedwait. A Python handler would run in the main thread
    between any two bytecodes, also inside ``threading.Event.wait`` while
    it holds the lock that ``Event.set`` needs: a SIGTERM that arrived as
    the service settled into its wait then hung it for good. A signal
    that arrives during start-up stays pending and stops the service as
    soon as start-up is done.
    """

    def __init__(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        self.received = None

    def wait(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: for ever) for a stop
        signal; returns whether one has come."""
        if self.received is None:
            if timeout is None:
                self.received = signal.sigwaitinfo(STOP_SIGNALS).si_signo
            else:
                info = signal.sigtimedwait(STOP_SIGNALS, timeout)
                self.received = info.si_signo if info else None
        return self.received is not None


def connect_libvirt(driver, retries, interval, stop):
    """Open libvirt, retrying up to ``retries`` times, with back-off.

    The first retry waits ``interval`` seconds and each further one twice
    as long. Every failure prints one line naming the URI. Returns True
    once connected; False when the last attempt failed or a stop signal
    came while waiting. Nothing is recorded before libvirt answers, so no
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
    stop = StopSignals()
    try:
        config.parse_args(argv)
    except exception.ConfigError as exc:
        return common.print_error(exc.format_message())
    manager = compute_manager.ComputeManager(CONF.host)
    if not connect_libvirt(manager.driver,
                           CONF.compute.libvirt_connect_retries,
                           CONF.compute.libvirt_connect_retry_interval, stop):
        return 0 if stop.received else 1
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
