"""Collect the context-length study's walk-forward runs into one table, result.json and a plot.

    python3 benchmarks/volatility/summarize.py OUT 24 168 720 2160 8760

Reads OUT/ctx_<L>/walkforward.json for every context length L; writes OUT/result.json (per length: the model's
pooled QLIKE with its 95% interval, MSE of ln RV, Mincer-Zarnowitz slope and R², the Diebold-Mariano test against
HAR-RV on QLIKE, and the same run's HAR-RV, GARCH, EWMA, naive and ridge QLIKE) and OUT/qlike_vs_context.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BASELINES = ("har", "garch", "ewma", "naive", "ridge")


def summarize(out: Path, lengths: list[int]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for length in lengths:
        path = out / f"ctx_{length}" / "walkforward.json"
        if not path.is_file():
            rows[str(length)] = {"missing": str(path)}
            continue
        report = json.loads(path.read_text())
        pooled = report["pooled"]["volatility"]
        model = pooled["forecasts"]["model"]
        har = pooled["forecasts"]["har"]
        rows[str(length)] = {
            "windows": pooled["n"], "hac_lag": pooled["lag"],
            "first_test": report["pooled"]["first_timestamp"], "last_test": report["pooled"]["last_timestamp"],
            "model_qlike": model["qlike"], "model_qlike_ci95": [model["qlike_lo"], model["qlike_hi"]],
            "model_mse_log": model["mse_log"], "model_mz": model["mz"],
            "qlike_vs_har": model["qlike"] / har["qlike"] - 1.0,
            "dm_vs_har": model["dm_qlike"],
            "baselines_qlike": {name: pooled["forecasts"][name]["qlike"] for name in BASELINES
                                if name in pooled["forecasts"]},
            "per_fold_model_qlike": [fold["volatility"]["forecasts"]["model"]["qlike"]
                                     for fold in report["folds"] if "forecasts" in fold.get("volatility", {})],
            "per_fold_har_qlike": [fold["volatility"]["forecasts"]["har"]["qlike"]
                                   for fold in report["folds"] if "forecasts" in fold.get("volatility", {})],
        }
    return rows


def plot(rows: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(int(k), v) for k, v in rows.items() if "model_qlike" in v]
    if not done:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    xs = [k for k, _ in done]
    ys = [v["model_qlike"] for _, v in done]
    lo = [v["model_qlike"] - v["model_qlike_ci95"][0] for _, v in done]
    hi = [v["model_qlike_ci95"][1] - v["model_qlike"] for _, v in done]
    ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", capsize=3, label="Reformer (95% HAC interval)")
    for name, style in (("har", "--"), ("garch", ":"), ("ewma", "-."), ("naive", (0, (1, 3)))):
        values = [v["baselines_qlike"].get(name) for _, v in done]
        if all(value is not None for value in values):
            ax.plot(xs, values, linestyle=style, label=name.upper() if name != "naive" else "naive (last day)")
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("context length (hourly bars)")
    ax.set_ylabel("QLIKE, pooled test windows (lower is better)")
    ax.set_title("BTCUSDT 1h: next-24h realised variance, walk-forward", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    out = Path(sys.argv[1])
    lengths = [int(x) for x in sys.argv[2:]]
    rows = summarize(out, lengths)
    (out / "result.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, out / "qlike_vs_context.png")
    for length, row in rows.items():
        if "model_qlike" in row:
            print(f"L={length:>5}: QLIKE {row['model_qlike']:.4f} [{row['model_qlike_ci95'][0]:.4f}, "
                  f"{row['model_qlike_ci95'][1]:.4f}], HAR {row['baselines_qlike']['har']:.4f} "
                  f"({100 * row['qlike_vs_har']:+.1f}%), DM p = {row['dm_vs_har']['p_value']:.3f}")
        else:
            print(f"L={length:>5}: {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
