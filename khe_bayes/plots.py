"""Figures (PNG) from ArviZ results and tables. Matplotlib only, non-interactive backend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import arviz as az
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

from khe_bayes.summary import CI_PROB, select_draws

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def forest_by_prior(fits: dict[str, xr.DataTree], var: str, path: Path, title: str) -> Path:
    """Posterior mean and 95% HDI of each element of ``var``, one marker per prior set."""
    first = next(iter(fits.values()))
    dim = next(d for d in first.posterior[var].dims if d not in ("chain", "draw"))
    labels = [str(x) for x in first.posterior[var][dim].values]
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(labels) * max(1, len(fits) / 2) + 1.2))
    offsets = np.linspace(-0.25, 0.25, len(fits)) if len(fits) > 1 else [0.0]
    for offset, (prior, idata) in zip(offsets, fits.items(), strict=True):
        for i, label in enumerate(labels):
            draws = select_draws(idata, f"{var}[{label}]")
            lo, hi = az.hdi(draws, prob=CI_PROB)
            y = i + offset
            ax.plot([lo, hi], [y, y], lw=2, color=f"C{list(fits).index(prior)}")
            ax.plot(draws.mean(), y, "o", color=f"C{list(fits).index(prior)}")
    for i, prior in enumerate(fits):
        ax.plot([], [], "o-", color=f"C{i}", label=prior)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"{var} (posterior mean and {CI_PROB:.0%} HDI)")
    ax.set_title(title)
    ax.legend(title="prior", fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def densities_with_thresholds(
    idata: xr.DataTree,
    quantities: list[str],
    thresholds: pd.DataFrame,
    path: Path,
    title: str,
    xlim: tuple[float, float] | None = None,
) -> Path:
    """Posterior density (histogram) of each quantity with its threshold lines."""
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.2 * len(quantities), 3.2))
    axes = np.atleast_1d(axes)
    for ax, q in zip(axes, quantities, strict=True):
        draws = select_draws(idata, q)
        ax.hist(draws, bins=60, density=True, color="C0", alpha=0.7)
        for _, t in thresholds[thresholds["quantity"] == q].iterrows():
            value = float(t["value"])
            ax.axvline(value, color="C3", ls="--", lw=1)
            ax.text(
                value,
                ax.get_ylim()[1] * 0.9,
                f" {t['statement']}\n = {t['probability']:.3f}",
                fontsize=7,
                color="C3",
                va="top",
            )
        ax.set_title(q, fontsize=9)
        if xlim:
            ax.set_xlim(*xlim)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def zero_event_plot(idata: xr.DataTree, zero_events: pd.DataFrame, prior: str, path: Path) -> Path:
    """Posterior of each zero-event rate with the credible bound and the rule of three."""
    rows = zero_events[zero_events["prior"] == prior]
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.2))
    axes = np.atleast_1d(axes)
    upper_col = next(c for c in rows.columns if c.startswith("upper_credible"))
    for ax, (_, r) in zip(axes, rows.iterrows(), strict=True):
        draws = select_draws(idata, f"rate[{r['outcome']}]")
        ax.hist(draws, bins=60, density=True, color="C0", alpha=0.7)
        ax.axvline(r[upper_col], color="C1", lw=1.5, label=f"95% upper credible {r[upper_col]:.4f}")
        ax.axvline(
            r["rule_of_three"], color="C3", ls="--", label=f"rule of 3: {r['rule_of_three']:.4f}"
        )
        ax.set_title(f"{r['outcome']} (0/{r['n']}), prior {prior}", fontsize=9)
        ax.legend(fontsize=7)
        ax.set_xlim(0, max(0.15, r["rule_of_three"] * 2))
    return _save(fig, path)


def ppc_reported_plot(ppc: pd.DataFrame, replications: pd.DataFrame, path: Path) -> Path:
    """Each reported statistic against its posterior predictive distribution.

    One panel per checked statistic: violins of the replicated estimate and CI endpoints, the
    reported values as red diamonds, and the verdict in the title.
    """
    checked = ppc[ppc["n_replications"] > 0].reset_index(drop=True)
    n = max(len(checked), 1)
    cols = min(3, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, (_, row) in zip(axes.flat, checked.iterrows(), strict=False):
        reps = replications[replications["statistic"] == row["statistic"]]
        if "interpretation" in reps:
            reps = reps[reps["interpretation"].isin([row["interpretation"], ""])]
        parts = [p for p in ("lower", "estimate", "upper") if np.isfinite(reps[p]).any()]
        data = [reps[p].to_numpy(float)[np.isfinite(reps[p].to_numpy(float))] for p in parts]
        ax.violinplot(data, positions=range(len(parts)), vert=False, showextrema=False)
        for j, p in enumerate(parts):
            value = row[f"reported_{p}"]
            if pd.notna(value):
                ax.plot(value, j, "D", color="C3", ms=6)
        ax.set_yticks(range(len(parts)), parts)
        ax.set_title(f"{row['statistic']}\n{row['interpretation']}: {row['verdict']}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(
        "Reported values (red) against their posterior predictive distribution", fontsize=9
    )
    return _save(fig, path)


def center_forest(
    idata: xr.DataTree, var: str, path: Path, title: str, select: dict | None = None
) -> Path:
    """Forest plot of a per-center quantity (posterior mean, 50% and 95% HDI), with the
    cross-center mean as a dashed line."""
    da = idata.posterior[var]
    if select:
        da = da.sel(select)
    centers = [str(c) for c in da["center"].values]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(centers) + 1.2))
    for i, c in enumerate(centers):
        draws = da.sel(center=c).values.reshape(-1)
        lo, hi = az.hdi(draws, prob=CI_PROB)
        lo50, hi50 = az.hdi(draws, prob=0.5)
        ax.plot([lo, hi], [i, i], color="C0", lw=1.2)
        ax.plot([lo50, hi50], [i, i], color="C0", lw=4)
        ax.plot(draws.mean(), i, "o", color="C3")
    ax.axvline(float(da.mean()), color="grey", ls="--", lw=1)
    ax.set_yticks(range(len(centers)), centers, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{var} (mean, 50% and {CI_PROB:.0%} HDI)")
    ax.set_title(title, fontsize=10)
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
