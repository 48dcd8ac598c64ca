"""What nova-manage and nova-status share: argument plumbing and errors.

Commands are methods of category classes, their arguments declared with
the ``args`` decorator; ``build_parser`` turns the categories into
argparse sub-commands. A command returns its exit code.
"""

import argparse
import logging
import os
import sys

from oslo_db import exception as db_exc
import sqlalchemy as sa

from nova import config
from nova.db import transactions
from nova.db import utils as db_utils
from nova import exception

LOG = logging.getLogger(__name__)

# Exit code for a command line that cannot be parsed (unknown command,
# missing or malformed argument), as Nova uses for invalid input.
EXIT_USAGE = 127


def args(*names, **kwargs):
    """Declare one argument of a command (the argparse add_argument call)."""
    def decorator(func):
        func.__dict__.setdefault('args', []).insert(0, (names, kwargs))
        return func
    return decorator


class ArgumentParser(argparse.ArgumentParser):
    """argparse that exits with EXIT_USAGE, and a one-line message."""

    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write('%s: error: %s\n' % (self.prog, message))
        sys.exit(EXIT_USAGE)


def _commands(category):
    return sorted(name for name in dir(category)
                  if not name.startswith('_')
                  and callable(getattr(category, name)))


def build_parser(prog, categories):
    """An argparse parser with one sub-parser per category and command."""
    parser = ArgumentParser(prog=prog)
    parser.add_argument('--config-file', action='append', default=[],
                        metavar='PATH', help='Configuration file to read '
                        '(repeatable; later files override earlier ones).')
    parser.add_argument('--config-dir', action='append', default=[],
                        metavar='DIR', help='Directory of *.conf files to '
                        'read after the config files.')
    category_parsers = parser.add_subparsers(dest='category',
                                             metavar='CATEGORY')
    category_parsers.required = True
    for category_name, category in categories.items():
        category_parser = category_parsers.add_parser(
            category_name,
            help=(category.__doc__ or '').strip().splitlines()[0])
        action_parsers = category_parser.add_subparsers(
            dest='action', metavar='ACTION')
        action_parsers.required = True
        for action in _commands(category):
            func = getattr(category, action)
            doc = (func.__doc__ or '').strip()
            action_parser = action_parsers.add_parser(
                action, help=doc.splitlines()[0] if doc else None,
                description=doc)
            for names, kwargs in getattr(func, 'args', []):
                action_parser.add_argument(*names, **kwargs)
            action_parser.set_defaults(func=action)
    return parser


def config_argv(parsed):
    """The oslo.config command line for the parsed --config-* options."""
    argv = []
    for path in parsed.config_file:
        argv += ['--config-file', path]
    for path in parsed.config_dir:
        argv += ['--config-dir', path]
    return argv


def run(prog, categories, argv=None):
    """Parse ``argv``, load configuration, run the command; return its code.

    Configuration errors print one line and return 1; an unexpected error
    prints one line (no traceback) and returns 1.
    """
    parser = build_parser(prog, categories)
    parsed = parser.parse_args(argv)
    try:
        config.parse_args(config_argv(parsed), configure_logging=False)
    except exception.ConfigError as exc:
        return print_error(exc.format_message())
    category = categories[parsed.category]()
    kwargs = {key: value for key, value in vars(parsed).items()
              if key not in ('category', 'action', 'func', 'config_file',
                             'config_dir')}
    try:
        return getattr(category, parsed.func)(**kwargs)
    except (exception.NovaException, db_exc.DBError,
            sa.exc.SQLAlchemyError) as exc:
        return print_error(db_utils.describe_error(exc))
    except Exception as exc:
        LOG.debug('Unexpected error', exc_info=True)
        return print_error('unexpected error: %s'
                           % db_utils.describe_error(exc))


def print_error(message, code=1):
    """Print ``ERROR: message`` on one line to stderr; return ``code``.

    Any URL password in the message is masked first.
    """
    line = ' '.join(db_utils.scrub_secrets(str(message)).split())
    print('ERROR: %s' % line, file=sys.stderr)
    return code


def quiet_logging():
    """Keep log records off the terminal of an operator command.

    Commands report every error themselves, on one line; left alone,
    Python would print library records (oslo.db logs each wrapped
    database error with its traceback and SQL) to stderr.
    """
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


def console_script(main):
    """Run ``main()`` as a console script: exit with its code, at once.

    The code is main's return value or SystemExit's (None is 0; a
    message is printed to stderr and is 1, as Python does).
    """
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    exit_now(code or 0)


def exit_now(code):
    """End the process with ``code`` without the interpreter's clean-up.

    At exit Python frees every object of the 460 modules a command
    imports, one by one: 0.1-0.2 s here, a third of a one-instance
    command, for nothing the operator gets. What an exit must still do
    is done first: the database connections closed, the log handlers
    and the standard streams flushed. A stream that cannot be flushed
    (its reader went away) makes the code 120, as Python does.
    """
    transactions.close_direct_connections()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    os._exit(code)
