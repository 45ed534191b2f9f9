"""Command line: ``perpjax COMMAND ...``; one module per command, each with ``register(subparsers)``.

Exit codes: 0 done, 2 bad input (config, data or arguments; the message names the field or file),
1 an internal fault (a bug: please report it with the command line).
"""

from __future__ import annotations

import argparse
import sys

from . import calibrate, fit, simulate, venue

COMMANDS = (simulate, fit, calibrate, venue)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="perpjax", description="Monte Carlo risk engine for perpetual-futures venues.")
    sub = p.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
