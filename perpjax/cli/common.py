"""The flags every command that runs a config shares, declared once: the config (optional, the packaged
default), ``--book FILE`` (a user's own book, CSV or JSON: the config's ``book.accounts_file``, its other
accounts dropped), ``--set KEY=VALUE`` and ``--no-progress``; and the one way they are read (``load``).

Order of application: the config file (its ``extends`` chain), a packaged ``--scenario`` where the command
has one, ``--book``, then every ``--set`` in the order given. File paths inside a config are relative to the
config file that writes them; ``--book`` and paths given with ``--set`` are relative to the working
directory (``config.files``).
"""

from __future__ import annotations

CONFIG_HELP = "YAML config (default: the packaged default config)"
BOOK_HELP = ("your own book in place of the config's accounts: a CSV (account,mode,asset,size,entry,collateral,"
             "margin; one row per position) or a JSON list of accounts (as book.accounts); relative to the working "
             "directory; the same as book.accounts_file in a config, with the config's book.accounts, book.csv and "
             "book.generate dropped; format and examples: docs/own-book.md, configs/book_example.csv / .json")
SET_HELP = ("override a config value, e.g. --set mark.window_seconds=300 or --set assets.BTC.vol=0.7 (a list of "
            "named items takes a name or an index); repeatable, applied in order after --book")


def add_config_args(p, *, config: bool = True, config_help: str = CONFIG_HELP, book: bool = True,
                    progress: bool = True, progress_help: str = "no progress bar") -> None:
    """Add the shared flags to the subparser ``p``: the positional ``config`` (optional) unless ``config`` is
    false (a command naming its config another way), ``--book`` unless ``book`` is false (a command that does
    not use the book), ``--set``, and ``--no-progress`` unless ``progress`` is false."""
    if config:
        p.add_argument("config", nargs="?", help=config_help)
    if book:
        p.add_argument("--book", metavar="FILE", help=BOOK_HELP)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    if progress:
        p.add_argument("--no-progress", action="store_true", help=progress_help)


def load(args, config=None, *, scenario: str | None = None) -> dict:
    """The config the arguments name (``config.load_config``): ``config`` (default ``args.config``; None:
    the packaged default), the ``scenario``, ``args.book`` and ``args.overrides`` applied; a ``ConfigError``
    names the field or file."""
    from ..config import load_config

    path = getattr(args, "config", None) if config is None else config
    return load_config(path, args.overrides, book=getattr(args, "book", None), scenario=scenario)
