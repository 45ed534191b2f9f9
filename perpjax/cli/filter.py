"""``perpjax filter``: move a fitted config's ``market_state`` to a later forecast origin.

What a daily risk run does: the parameters stay as fitted (nothing is re-estimated); the GARCH
variances and the stress regime are filtered through the bars before ``--end`` (``estimate.filter_state``:
no bar at or after it is read), the ``market_state`` block of the file is replaced and each asset's
``price`` becomes the last close before the origin (the paths start there; ``--keep-prices`` leaves
them). The book is kept as written: its entries and collateral are the positions' own, so a later
origin marks them at the new prices, as a daily run of a real book must; a book that the new prices put
below maintenance is refused (nothing written) unless ``--rebase-book`` moves it with the prices,
leverage kept (``estimate.rebase_book``, what ``perpjax fit`` does to the base book: for a synthetic
book), or the config allows it (``book.start_below_maintenance``). Every other line is kept (when
``--out`` is in another directory, the relative file paths the file writes, ``innovations.residuals``,
``book.csv``, a ladder's bracket file, ``extends``, are re-pointed so the copy still finds its files:
``config.files.rebase``); the written text is read back and must give the new blocks exactly.
"""

from __future__ import annotations

import sys


def register(sub) -> None:
    fl = sub.add_parser("filter", help="update a fitted config's market_state (GARCH variance, regime) and prices to a "
                                       "later origin, parameters unchanged",
                        description="Filter the fitted GARCH variances and the stress regime to the origin --end "
                                    "(bars before it only), write them as the config's market_state and move "
                                    "the assets' prices to the last close before it.")
    fl.add_argument("config", help="a config written by `perpjax fit` (it needs a garch section)")
    fl.add_argument("csv", nargs="*", help="price files (format of ../shared/data; several make one window, rows "
                                           "repeated across files must agree); default: the shared hourly file")
    fl.add_argument("--end", required=True, help="forecast origin: end of the filtered window, exclusive "
                                                 "(UTC date or unix seconds)")
    fl.add_argument("--out", help="config to write (default: update CONFIG in place)")
    fl.add_argument("--symbols", help="comma-separated data symbols, one per config asset in order (default: the "
                                      "residual file's symbols, else NAME + USDT)")
    fl.add_argument("--lookback-days", type=float, default=90.0, help="days of bars filtered (default 90)")
    fl.add_argument("--keep-prices", action="store_true",
                    help="leave assets' price as written (default: the last close before the origin)")
    fl.add_argument("--rebase-book", action="store_true",
                    help="move the book's entries (and isolated margins, cross collateral) with the prices, "
                         "leverage kept: for a synthetic book such as the one `perpjax fit` writes")
    fl.add_argument("--jump-threshold", type=float, default=8.0,
                    help="bars flagged as jumps at this threshold enter as an average shock, as in the fit "
                         "(default 8; 0 = none)")
    fl.set_defaults(func=run_command)


NOTE = "# market_state filtered by `perpjax filter`"


def replace_block(text: str, key: str, block: str, comment: str | None = None) -> str:
    """``text`` (YAML) with its top-level ``key:`` block (the key's line and the indented or list lines under
    it, comment lines among them included, with the comment lines just above it that start with
    ``comment``) replaced by ``block``, or ``block`` appended if there is none. ``_check_written`` verifies
    the result."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.startswith(f"{key}:")), None)
    if start is None:
        return text + ("" if text.endswith("\n") or not text else "\n") + block
    end = start + 1
    while comment and start > 0 and lines[start - 1].startswith(comment):
        start -= 1
    def inside(i):  # a line of the block: indented, a list item, blank, or a comment the block continues after
        ln = lines[i]
        if ln[:1] in (" ", "\t", "-", "\n") or not ln.strip():
            return True
        if ln.startswith("#"):
            j = next((j for j in range(i + 1, len(lines)) if lines[j].strip() and not lines[j].startswith("#")), None)
            return j is not None and lines[j][:1] in (" ", "\t", "-")
        return False

    while end < len(lines) and inside(end):
        end += 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _symbols(a, cfg, names, residuals) -> list:
    if a.symbols:
        symbols = [x.strip() for x in a.symbols.split(",") if x.strip()]
    elif residuals is not None and residuals.get("symbols"):
        symbols = residuals["symbols"]
    else:
        symbols = [f"{n}USDT" for n in names]
    if len(symbols) != len(names):
        raise ValueError(f"--symbols: {len(symbols)} symbols for the config's {len(names)} assets {names}")
    return symbols


def _check_book(old_cfg: dict, model, labels, resolved: dict, time: str) -> None:
    """Refuse new prices that put margin units below maintenance that were not before (a config that
    ``simulate`` ran must still run), unless ``book.start_below_maintenance`` allows it."""
    from ..config import ConfigError, build_model
    from ..solvency import below_maintenance, listing

    if (resolved.get("book") or {}).get("start_below_maintenance"):
        return
    before = {u for u, _, _ in below_maintenance(*build_model(old_cfg)[:2])}
    new = [b for b in below_maintenance(model, labels) if b[0] not in before]
    if new:
        raise ConfigError(f"book: at the prices of {time} {len(new)} margin unit(s) start below maintenance: "
                          f"{listing(new)}; nothing written: --rebase-book moves a synthetic book with the prices "
                          "(leverage kept), --keep-prices leaves the prices, book.start_below_maintenance: true "
                          "allows it")


def _check_written(text: str, blocks: dict, path) -> None:
    """The edited YAML must read back to exactly the new ``blocks`` (a block edit that a comment or an
    anchor inside the block would confuse is refused, nothing written)."""
    import yaml

    back = yaml.safe_load(text)
    for key, want in blocks.items():
        if not isinstance(back, dict) or back.get(key) != want:
            raise ValueError(f"{path}: the {key} block could not be replaced cleanly (comments or anchors inside "
                             f"it?); nothing written: edit {key} by hand or write --out to a fresh file")


def _check_state_assets(cfg, names, residuals, path) -> None:
    """A ``market_state`` or residual file for another asset set is an error (naming the field or file)."""
    ms = cfg.get("market_state")
    if isinstance(ms, dict) and isinstance(ms.get("variance_ratio"), list) and len(ms["variance_ratio"]) != len(names):
        raise ValueError(f"market_state.variance_ratio: {len(ms['variance_ratio'])} values for the config's "
                         f"{len(names)} assets {names} (a state for a different asset set) in {path}")
    if residuals is not None and residuals["assets"] != names:
        raise ValueError(f"innovations.residuals: {cfg['innovations']['residuals']} holds assets "
                         f"{residuals['assets']}, the config has {names} (a state for a different asset set)")


def run_command(a) -> int:
    from pathlib import Path

    import numpy as np
    import yaml

    from .. import estimate, replay
    from ..config import ConfigError, build_model, files, load_config
    from ..io import atomic_write_text
    from ..timeutil import format_time, parse_time

    src = Path(a.config)
    out = Path(a.out) if a.out else src
    try:
        cfg = load_config(src)
        g = estimate.garch_from_config(cfg)
        names = g["names"]
        inn = cfg.get("innovations") or {}
        residuals = estimate.read_residuals(inn["residuals"]) if inn.get("residuals") else None
        _check_state_assets(cfg, names, residuals, src)
        symbols = _symbols(a, cfg, names, residuals)
        origin = parse_time(a.end, "--end")
        if residuals is not None and origin < residuals["end"]:
            raise ValueError(f"--end: {format_time(origin)} is before the end of the fit window "
                             f"{format_time(residuals['end'])} ({inn['residuals']}): the fitted "
                             "parameters would use data after the origin")
        closes = estimate.read_prices(a.csv if a.csv else replay.default_data_path())
        st = estimate.filter_config_state(cfg, closes, symbols, origin, lookback_seconds=a.lookback_days * 86400,
                                          jump_threshold=a.jump_threshold or None)
        state = estimate.market_state(st)
        new = {**cfg, "market_state": state}
        if not a.keep_prices:
            new["assets"] = [{**x, "price": float(p)} for x, p in zip(cfg["assets"], st.last_price, strict=True)]
            if a.rebase_book:
                new, _ = estimate.rebase_book(new, {x["name"]: float(x["price"]) for x in cfg["assets"]})
        model, labels, resolved = build_model(new)  # the written config must be valid as it stands ...
        if not a.keep_prices:  # ... and still run: `simulate` refuses units below maintenance at t = 0
            _check_book(cfg, model, labels, resolved, state["time"])
        text = src.read_text()
        blocks = ["market_state"] + ([] if a.keep_prices else ["assets"]) + (["book"] if a.rebase_book else [])
        for key in blocks[1:]:
            text = replace_block(text, key, yaml.safe_dump({key: new[key]}, sort_keys=False,
                                                           default_flow_style=None))
        written = {k: new[k] for k in blocks}
        if out.resolve().parent != src.resolve().parent:  # the file's relative paths follow it (config.files)
            raw = yaml.safe_load(src.read_text())
            moved = files.rebase(raw, src.parent, out.parent)
            for key in [k for k in moved if moved[k] != raw[k] and k not in blocks]:
                text = replace_block(text, key, yaml.safe_dump({key: moved[key]}, sort_keys=False))
                written[key] = moved[key]
        note = f"{NOTE} over {st.n_bars} bars of {', '.join(symbols)} to {state['time']}; parameters as fitted\n"
        text = replace_block(text, "market_state", note + yaml.safe_dump({"market_state": state}, sort_keys=False),
                             NOTE)
        _check_written(text, written, src)
    except (ValueError, ConfigError) as e:
        print(f"perpjax: input error: {e}", file=sys.stderr)
        return 2
    vol = np.asarray(model.prices.vol, np.float64)  # the simulated level (FHS: vol x the residual std)
    print(f"market state at {state['time']} ({st.n_bars} bars from {format_time(st.window_start)}, "
          f"start weight {st.start_weight:.1e}); stress: {'on' if st.stress else 'off'}")
    print(f"{'asset':8} {'symbol':10} {'last close':>12} {'var ratio':>10} {'cond. vol':>10} {'level vol':>10} "
          f"{'jump bars':>9}")
    for i, n in enumerate(names):
        print(f"{n:8} {symbols[i]:10} {st.last_price[i]:12.6g} {st.variance_ratio[i]:10.4f} "
              f"{vol[i] * np.sqrt(st.variance_ratio[i]):10.4f} {vol[i]:10.4f} {int(st.jump_bars[i]):9d}")
    atomic_write_text(out, text)
    what = "market_state" + ("" if a.keep_prices else " and assets' prices") + (", book rebased" if a.rebase_book
                                                                               else "")
    print(f"\nwrote {out} ({what}; run it: perpjax simulate {out})")
    return 0
