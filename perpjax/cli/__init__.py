"""Command line: ``perpjax COMMAND ...``; one module per command, each with ``register(subparsers)``.

Exit codes: 0 done, 2 bad input (config, data or arguments; the message names the field or file),
1 an internal fault (a bug: please report it with the command line).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from . import backtest, calibrate, filter, fit, report, sensitivities, simulate, sweep, venue

COMMANDS = (simulate, fit, filter, calibrate, venue, backtest, report, sweep, sensitivities)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perpjax", description="Monte Carlo risk engine for perpetual-futures venues.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv=None) -> int:
    """Run a command; every failure is one message on stderr: exit 2 for bad input (config, data, files,
    arguments), 1 for an internal fault ("perpjax: internal error: ... (please report)"). No traceback
    unless ``PERPJAX_DEBUG=1``."""
    import os

    args = parser().parse_args(argv)
    debug = os.environ.get("PERPJAX_DEBUG", "") not in ("", "0")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("perpjax: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: a message, not a traceback
        if debug:
            raise
        if isinstance(e, ConfigError):
            print(f"perpjax: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and getattr(e, "filename", None):
            print(f"perpjax: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"perpjax: internal error: {type(e).__name__}: {e} (please report, with the command line; "
              "PERPJAX_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
