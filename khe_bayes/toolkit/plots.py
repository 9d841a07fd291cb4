"""Figures (PNG) from ArviZ results and tables. Matplotlib only, non-interactive backend."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from khe_bayes.toolkit.summary import select_draws

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _label(name: str, labels: Mapping[str, str] | None) -> str:
    return (labels or {}).get(name, name)


def forest_by_prior(
    fits: dict[str, xr.DataTree],
    var: str,
    path: Path,
    title: str,
    labels: Mapping[str, str] | None = None,
    percent: bool = False,
) -> Path:
    """Posterior median, 50% and 95% equal-tailed intervals of each element of ``var``, one
    row per prior set. ``labels`` maps an element (e.g. ``response_12m``) to the words shown;
    ``percent`` shows probabilities as percentages."""
    first = next(iter(fits.values()))
    dim = next(d for d in first.posterior[var].dims if d not in ("chain", "draw"))
    names = [str(x) for x in first.posterior[var][dim].values]
    scale = 100.0 if percent else 1.0
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(names) * max(1, len(fits) / 2) + 1.6))
    offsets = np.linspace(-0.22, 0.22, len(fits)) if len(fits) > 1 else [0.0]
    for k, (offset, idata) in enumerate(zip(offsets, fits.values(), strict=True)):
        for i, name in enumerate(names):
            draws = select_draws(idata, f"{var}[{name}]") * scale
            _interval_marks(ax, draws, i + offset, f"C{k}")
    for k, prior in enumerate(fits):
        ax.plot([], [], "o-", color=f"C{k}", label=prior)
    ax.set_yticks(range(len(names)), [_wrap(_label(n, labels), 38) for n in names], fontsize=9)
    ax.invert_yaxis()
    unit = "%" if percent else "value"
    ax.set_xlabel(f"posterior ({unit}): median, 50% (thick) and 95% (thin) interval")
    ax.set_title(title, fontsize=11)
    ax.legend(title="prior", fontsize=8, loc="center left")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _interval_marks(ax, draws: np.ndarray, y: float, color: str) -> None:
    """Median with its 50% and 95% equal-tailed intervals: the marker always lies inside both
    bars (a mean can fall outside a skewed distribution's 50% HDI)."""
    q = np.quantile(draws, [0.025, 0.25, 0.5, 0.75, 0.975])
    ax.plot([q[0], q[4]], [y, y], color=color, lw=1.3)
    ax.plot([q[1], q[3]], [y, y], color=color, lw=4.5, solid_capstyle="butt")
    ax.plot(q[2], y, "o", color="white", mec=color, mew=1.5, ms=6)


def densities_with_thresholds(
    idata: xr.DataTree,
    quantities: list[str],
    thresholds: pd.DataFrame,
    path: Path,
    title: str,
    xlim: tuple[float, float] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Posterior density (histogram) of each quantity with its threshold lines."""
    fig, axes = plt.subplots(1, len(quantities), figsize=(5.2 * len(quantities), 3.6))
    axes = np.atleast_1d(axes)
    for ax, q in zip(axes, quantities, strict=True):
        draws = select_draws(idata, q)
        ax.hist(draws, bins=60, density=True, color="C0", alpha=0.7, label="posterior")
        for _, t in thresholds[thresholds["quantity"] == q].iterrows():
            value = float(t["value"])
            word = "above" if t["direction"] == ">" else "below"
            ax.axvline(
                value,
                color="C3",
                ls="--",
                lw=1,
                label=f"P({word} {value:g}) = {t['probability']:.2f}",
            )
        ax.set_title(_wrap(_label(q, labels), 48), fontsize=9)
        ax.set_xlabel("probability")
        ax.set_yticks([])
        ax.legend(fontsize=8, loc="upper left")
        if xlim:
            ax.set_xlim(*xlim)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def zero_event_plot(
    idata: xr.DataTree,
    zero_events: pd.DataFrame,
    prior: str,
    path: Path,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Posterior of each zero-event rate with the credible bound and the rule of three."""
    rows = zero_events[zero_events["prior"] == prior]
    fig, axes = plt.subplots(1, len(rows), figsize=(5.2 * len(rows), 3.6))
    axes = np.atleast_1d(axes)
    upper_col = next(c for c in rows.columns if c.startswith("upper_credible"))
    for ax, (_, r) in zip(axes, rows.iterrows(), strict=True):
        draws = select_draws(idata, f"rate[{r['outcome']}]") * 100
        ax.hist(draws, bins=60, density=True, color="C0", alpha=0.7, label="posterior")
        upper = 100 * r[upper_col]
        ax.axvline(upper, color="C1", lw=1.5, label=f"95% upper bound {upper:.1f}%")
        three = 100 * r["rule_of_three"]
        ax.axvline(three, color="C3", ls="--", label=f"rule of three {three:.1f}%")
        name = _label(f"rate[{r['outcome']}]", labels)
        ax.set_title(_wrap(f"{name}: 0 of {r['n']}", 48), fontsize=9)
        ax.set_xlabel("rate (%)")
        ax.set_yticks([])
        ax.legend(fontsize=8)
        ax.set_xlim(0, max(15, three * 2))
    fig.suptitle(f"Zero-event safety outcomes (prior {prior})", fontsize=11)
    return _save(fig, path)


VERDICT_COLORS = {"consistent": "C2", "tension": "C1", "inconsistent": "C3"}
PPC_PARTS = {
    "ppp_estimate": ("estimate", "o"),
    "ppp_lower": ("CI lower end", "<"),
    "ppp_upper": ("CI upper end", ">"),
    "share_p_bound_met": ("p-value bound met", "s"),
}


def ppc_reported_plot(
    ppc: pd.DataFrame,
    replications: pd.DataFrame | None,
    path: Path,
    rule: tuple[float, float] = (0.05, 0.005),
) -> Path:
    """Every checked statistic in one panel: each reported number's posterior predictive
    p-value (log scale), with the verdict rule's bands; the smallest value of a row decides its
    verdict. Rows are labelled in words (statistic, reading)."""
    del replications  # the ppc table carries everything shown
    checked = ppc[ppc["n_replications"] > 0].reset_index(drop=True)
    floor = 1e-3
    fig, ax = plt.subplots(figsize=(10, 0.42 * max(len(checked), 1) + 1.9))
    consistent_at, inconsistent_below = rule
    ax.axvspan(floor / 2, inconsistent_below, color="C3", alpha=0.08)
    ax.axvspan(inconsistent_below, consistent_at, color="C1", alpha=0.08)
    ax.axvspan(consistent_at, 1.6, color="C2", alpha=0.06)
    for x in rule:
        ax.axvline(x, color="grey", lw=0.8, ls=":")
    for i, row in checked.iterrows():
        color = VERDICT_COLORS.get(row["verdict"], "grey")
        for column, (_, marker) in PPC_PARTS.items():
            value = row.get(column)
            if value is not None and pd.notna(value):
                ax.plot(
                    max(float(value), floor), i, marker, color=color, ms=7, mec="black", mew=0.4
                )
    for name, marker in PPC_PARTS.values():
        ax.plot([], [], marker, color="white", mec="black", label=name)
    for verdict, color in VERDICT_COLORS.items():
        ax.plot([], [], "s", color=color, label=verdict)
    labels = [
        _wrap(f"{_words(r.statistic)} ({_words(r.interpretation)}): {r.verdict}", 46)
        for r in checked.itertuples()
    ]
    ax.set_yticks(range(len(checked)), labels, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(floor / 2, 1.6)
    ax.set_xlabel(f"posterior predictive p-value (log scale; {floor:g} or less drawn at {floor:g})")
    ax.set_title(
        "Reported statistics against data replicated from the posterior", fontsize=11, pad=40
    )
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    return _save(fig, path)


def _words(name: object) -> str:
    return str(name).replace("_", " ")


def center_forest(
    idata: xr.DataTree,
    var: str,
    path: Path,
    title: str,
    select: dict | None = None,
    center_n: Mapping[str, str] | None = None,
    xlabel: str = "",
    percent: bool = False,
) -> Path:
    """Forest plot of a per-center quantity: posterior median with 50% and 95% equal-tailed
    intervals (the median always lies inside both; a mean can sit outside a skewed
    distribution's 50% HDI), the median over centers as a dashed line, and each center's
    number of patients (``center_n``, e.g. a range across reconstructed datasets)."""
    da = idata.posterior[var]
    if select:
        da = da.sel(select)
    scale = 100.0 if percent else 1.0
    centers = [str(c) for c in da["center"].values]
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(centers) + 1.8))
    for i, c in enumerate(centers):
        _interval_marks(ax, da.sel(center=c).values.reshape(-1) * scale, i, "C0")
    ax.axvline(float(np.median(da.values)) * scale, color="grey", ls="--", lw=1)
    names = [f"{c}\n(n = {center_n[c]})" if center_n and c in center_n else c for c in centers]
    ax.set_yticks(range(len(centers)), names, fontsize=8.5)
    ax.invert_yaxis()
    ax.plot([], [], "o", color="white", mec="C0", mew=1.5, label="median")
    ax.plot([], [], color="C0", lw=4.5, label="50% interval")
    ax.plot([], [], color="C0", lw=1.3, label="95% interval")
    ax.plot([], [], color="grey", ls="--", lw=1, label="median over centers")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_xlabel(xlabel or var)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def rank_histograms(ranks: pd.DataFrame, n_ranks: int, bins: int, path: Path) -> Path:
    """SBC rank histograms, one panel per parameter, with the 99% band of a uniform histogram."""
    from scipy import stats

    names = list(dict.fromkeys(ranks["parameter"]))
    cols = min(6, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.7 * rows), squeeze=False)
    n = ranks.groupby("parameter").size().iloc[0]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    for ax, name in zip(axes.ravel(), names, strict=False):
        counts = np.bincount(
            ranks.loc[ranks["parameter"] == name, "rank"].to_numpy() * bins // n_ranks,
            minlength=bins,
        )
        ax.axhspan(lo, hi, color="0.85")
        ax.bar(np.arange(bins), counts, width=0.9, color="C0")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"SBC rank histograms ({n} replications; grey: 99% band if uniform)", fontsize=9)
    return _save(fig, path)
