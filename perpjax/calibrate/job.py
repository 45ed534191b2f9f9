"""The calibration job (``perpjax calibrate``): config in, tuned ladder, history, metrics and plots out.

The tuned ladder is evaluated before and after with the hard engine on fresh paths (another seed),
and written in a venue's own format (``ladder.csv``) and as a config (``calibrated.yaml``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..engine import RiskModel
from ..margin import Ladder
from .objective import initial_maintenance
from .optimise import calibrate
from .space import LadderSpace, check_ladder


def ladder_space(model: RiskModel, names, cal: dict) -> LadderSpace:
    """The space a resolved ``calibration`` section tunes (raises ValueError naming the field)."""
    tuned = [names.index(a) for a in (names if cal["assets"] == "all" else cal["assets"])]
    return LadderSpace.from_model(model, tuned, cal["min_mmr"], cal["max_mmr"], tuple(cal["tune"]),
                                  cal["max_fee_rate"])


def ladder_table(ladder: Ladder, names) -> pd.DataFrame:
    """The ladder in a venue's own format: floor, cap, MMR, IMR, max leverage, maintenance amount."""
    rows = []
    f, m, i, cum = (np.asarray(x, np.float64) for x in (ladder.floors, ladder.mmr, ladder.imr, ladder.cum))
    for a, name in enumerate(names):
        n = ladder.n_tiers[a]
        for k in range(n):
            rows.append({"asset": name, "tier": k + 1, "floor": f[a, k], "cap": f[a, k + 1] if k + 1 < n else math.inf,
                         "mmr": m[a, k], "imr": i[a, k], "max_leverage": 1.0 / i[a, k] if i[a, k] > 0 else math.inf,
                         "maintenance_amount": cum[a, k]})
    return pd.DataFrame(rows)


def run_calibration(config, *, overrides=(), out_dir, log=print, resume=False) -> dict:
    """CLI / API entry: calibrate, evaluate before/after with the hard engine on fresh paths, write files."""
    from ..api import run
    from ..config import apply_overrides, build_model, load_config, resolve_calibration
    from ..io import atomic_write_json, atomic_write_text

    cfg = config if isinstance(config, dict) else load_config(config)
    cfg = apply_overrides(cfg, overrides)
    model, labels, resolved = build_model(cfg)
    cal = resolve_calibration(resolved)
    names = resolved["asset_names"]
    space = ladder_space(model, names, cal)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "calibration_checkpoint.npz"
    if not resume:
        ckpt.unlink(missing_ok=True)
    seed = resolved["seed"] if cal["seed"] is None else cal["seed"]
    # stopping and evaluation settings may change on resume (e.g. more iterations)
    fp = json.dumps([resolved, {k: v for k, v in cal.items() if k not in ("iterations", "patience", "eval_paths")}],
                    sort_keys=True, default=str)
    t0 = time.perf_counter()
    theta, history = calibrate(model, space, cal, seed=seed, names=names, checkpoint=ckpt, fingerprint=fp,
                               log=(lambda r: log(_fmt(r))) if log else None)
    wall = time.perf_counter() - t0
    tuned_model = space.apply(model, theta)
    check_ladder(tuned_model.ladder, space)
    before_tab, after_tab = ladder_table(model.ladder, names), ladder_table(tuned_model.ladder, names)
    new_cfg = _with_tuned(cfg, after_tab, names, theta, tuned_model)
    # the hard engine on fresh paths (another seed), before and after
    eval_over = {"paths": cal["eval_paths"], "seed": seed + 1_000_003}
    before = run({**cfg, **eval_over})
    after = run({**new_cfg, **eval_over})
    atomic_write_text(out / "ladder.csv", after_tab.to_csv(index=False))
    atomic_write_text(out / "ladder_before.csv", before_tab.to_csv(index=False))
    atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
    keys = ["p_any_liquidation", "expected_liquidations", "bad_debt_mean", "bad_debt_es_99", "p_bad_debt",
            "insurance_fund_drawdown_es_99", "p_insurance_fund_depleted", "liquidated_notional_mean",
            "slippage_mean", "fees_mean", "trader_loss_mean"]
    # what the ladder asks of traders: the maintenance margin their positions require at t = 0 (USD)
    mm0 = {"maintenance_margin_t0": float(initial_maintenance(model, model.ladder)[0])}
    mm1 = {"maintenance_margin_t0": float(initial_maintenance(tuned_model, tuned_model.ladder)[0])}
    comparison = {"before": {**mm0, **{k: before.summary.get(k) for k in keys}},
                  "after": {**mm1, **{k: after.summary.get(k) for k in keys}},
                  "eval_paths": cal["eval_paths"], "eval_seed": eval_over["seed"], "iterations": len(history),
                  "wall_seconds": wall, "constraint": fund_loss_constraint(cal["objective"], before, after)}
    atomic_write_json(out / "metrics.json", comparison)
    import yaml

    atomic_write_text(out / "calibrated.yaml", "# written by `perpjax calibrate`\n" + yaml.safe_dump(
        new_cfg, sort_keys=False))
    _plots(out, pd.DataFrame(history), names, before.accounts, after.accounts)
    ckpt.unlink(missing_ok=True)
    return {"ladder": after_tab, "history": history, "metrics": comparison}


def _with_tuned(cfg: dict, table: pd.DataFrame, names, theta: dict, tuned_model: RiskModel) -> dict:
    """The config with the tuned ladder (``table``) and the other tuned values."""
    import copy

    new = copy.deepcopy(cfg)
    for name in names:
        t = table[table.asset == name]
        new["ladders"][name] = [{"floor": float(r.floor), "mmr": float(round(r.mmr, 8)), "imr": float(round(r.imr, 8))}
                                for r in t.itertuples()]
    if "fee_rate" in theta:
        new.setdefault("liquidation", {})["fee_rate"] = float(tuned_model.liquidation.fee_rate)
    if "mark_window" in theta:
        new.setdefault("mark", {})["window_seconds"] = float(tuned_model.mark.window_seconds)
    if "fraction" in theta:
        new.setdefault("liquidation", {})["fraction"] = float(tuned_model.liquidation.fraction)
    if "buffer" in theta:
        new.setdefault("liquidation", {})["buffer"] = float(tuned_model.liquidation.buffer)
    return new


def _fmt(row: dict) -> str:
    rates = " ".join(f"{k[4:]}={v:.5f}" for k, v in row.items() if k.startswith("mmr_"))
    return (f"it {row['iteration']:4d}  J {row['objective']:.6g}  |g| {row['grad_norm']:.3g}  "
            f"bad_debt {row['term_bad_debt']:.3g}  capital {row['term_capital']:.4g}  {rates}")


def fund_loss_constraint(obj: dict, before, after) -> dict | None:
    """The objective's constraint P(insurance-fund loss on a path > ``exceed_budget``) <=
    ``exceed_probability``, evaluated on the hard engine's fresh paths before and after (the optimiser
    only saw its smoothed version on the calibration paths); None without a budget."""
    budget = obj.get("exceed_budget")
    if budget is None:
        return None
    p = {k: float(np.mean(-np.asarray(r.outcome.path_fund_min) > budget)) for k, r in (("before", before),
                                                                                      ("after", after))}
    limit = float(obj["exceed_probability"])
    return {"exceed_budget_usd": float(budget), "limit": limit, **p, "met_after": p["after"] <= limit}


def _plots(out: Path, hist: pd.DataFrame, names, acc_before: pd.DataFrame, acc_after: pd.DataFrame) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plots are optional output; the CSVs carry the same numbers
        return
    from ..io import atomic_write_bytes

    def save(fig, name):
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write_bytes(out / name, buf.getvalue())

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(hist.iteration, hist.objective)
    ax[0].set(xlabel="iteration", ylabel="objective", title="objective")
    series = [c for c in hist.columns if c.startswith("mmr_")]
    colours = plt.cm.tab20(np.linspace(0, 1, max(len(series), 1)))  # one colour per tier, none reused
    styles = {a: ls for a, ls in zip(names, ("-", "--", ":", "-.") * 8, strict=False)}  # one style per asset
    for c, colour in zip(series, colours, strict=True):
        asset = c[4:].rsplit("_", 1)[0]
        ax[1].plot(hist.iteration, hist[c], label=c[4:], color=colour, linestyle=styles.get(asset, "-"))
    ax[1].set(xlabel="iteration", ylabel="MMR", title="maintenance rate per tier")
    ax[1].legend(fontsize=7, ncol=2)
    save(fig, "history.png")
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    tb = acc_before.groupby("tier")[["p_liquidation", "expected_bad_debt"]].mean()
    ta = acc_after.groupby("tier")[["p_liquidation", "expected_bad_debt"]].mean()
    x = np.arange(len(tb))
    for i, col in enumerate(("p_liquidation", "expected_bad_debt")):
        ax[i].bar(x - 0.2, tb[col], 0.4, label="before")
        ax[i].bar(x + 0.2, ta[col].reindex(tb.index), 0.4, label="after")
        ax[i].set_xticks(x, tb.index, rotation=45, ha="right", fontsize=7)
        ax[i].set(title=f"{col} by tier (hard engine, fresh paths)")
        ax[i].legend()
    save(fig, "by_tier.png")
