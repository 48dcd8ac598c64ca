"""Parse the command line and configuration files into ``nova.conf.CONF``."""

from oslo_config import cfg

import nova.conf
from nova import exception

CONF = nova.conf.CONF

# Options read at start-up so that a bad value stops the service or
# command before it does anything, with the offending entry named.
_CHECKED_AT_START = (('libvirt', 'hw_machine_type'),)

_logging_registered = False


def parse_args(argv, default_config_files=None, configure_logging=True):
    """Load configuration from ``argv`` (``--config-file`` ...) into CONF.

    With ``configure_logging``, oslo.log's options are registered and
    logging is set up from them (services); commands pass False.
    Raises ConfigError naming the file or the option when a config file is
    missing or unreadable or an option has an invalid value.
    """
    if configure_logging:
        _register_logging_options()
    try:
        CONF(argv, project='nova',
             default_config_files=default_config_files)
    except cfg.ConfigFilesNotFoundError as exc:
        raise exception.ConfigError(
            reason='config file not found or unreadable: %s'
            % ', '.join(exc.config_files))
    except cfg.ConfigFileParseError as exc:
        raise exception.ConfigError(reason='cannot parse %s: %s'
                                    % (exc.config_file, exc.msg))
    except cfg.Error as exc:
        raise exception.ConfigError(reason=str(exc).splitlines()[0])
    check_values()
    if configure_logging:
        from oslo_log import log as logging
        logging.setup(CONF, 'nova')


def _register_logging_options():
    """oslo.log's options, for the services that configure logging with them.

    oslo.log is imported here: the operator commands log nothing to
    configure (nova.cmd.common.quiet_logging) and its import is a tenth
    of their start-up.
    """
    global _logging_registered
    if not _logging_registered:
        from oslo_log import log as logging
        logging.register_options(CONF)
        _logging_registered = True


def write_config_file(path, sections):
    """Write ``{section: {option: value}}`` to ``path`` as an ini file.

    What parse_args reads back with ``--config-file path``: for the
    upgrade rehearsal, the benchmarks and the tests, which start nova
    commands with configurations of their own.
    """
    with open(path, 'w') as f:
        for section, options in sections.items():
            f.write('[%s]\n' % section)
            f.writelines('%s = %s\n' % item for item in options.items())
            f.write('\n')


def check_values():
    """Read every option in _CHECKED_AT_START; raise ConfigError if invalid."""
    for group, name in _CHECKED_AT_START:
        try:
            getattr(getattr(CONF, group), name)
        except (cfg.Error, ValueError) as exc:
            # cfg.Error: besides invalid values, a '$' in the value that
            # names no option (oslo.config substitutes $name and ${name}).
            detail = str(exc).split('is not valid:')[-1].strip() \
                if 'is not valid:' in str(exc) else str(exc)
            raise exception.ConfigError(
                reason='[%s]%s: %s' % (group, name, detail))
