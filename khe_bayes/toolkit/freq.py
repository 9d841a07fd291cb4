"""The frequentist procedures the paper most plausibly used, as plain functions.

Each returns a :class:`FreqResult` (estimate, 95% CI, two-sided p-value, degrees of freedom).
``PROCEDURES`` maps the ``test`` names used in evidence.toml interpretations to functions of the
groups of data they need; reconstruction and the posterior-predictive checks both use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class FreqResult:
    estimate: float
    lower: float
    upper: float
    p: float
    df: float = float("nan")


def _t_result(estimate: float, se: float, df: float, null: float = 0.0) -> FreqResult:
    q = stats.t.ppf(0.5 + LEVEL / 2, df)
    t = (estimate - null) / se if se > 0 else np.inf * np.sign(estimate - null)
    p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(t) else 0.0
    return FreqResult(estimate, estimate - q * se, estimate + q * se, p, df)


def t_one_sample(x: np.ndarray, null: float = 0.0) -> FreqResult:
    """Mean of ``x`` with its t interval; p tests mean = ``null``."""
    x = np.asarray(x, dtype=float)
    return _t_result(x.mean(), x.std(ddof=1) / np.sqrt(x.size), x.size - 1, null)


def t_paired(before: np.ndarray, after: np.ndarray) -> FreqResult:
    """Mean decrease ``before - after`` with its paired t interval; p tests no change."""
    return t_one_sample(np.asarray(before, float) - np.asarray(after, float))


def t_two_sample_pooled(a: np.ndarray, b: np.ndarray) -> FreqResult:
    """Difference in means ``a - b``, Student t with pooled variance."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = a.size, b.size
    sp2 = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    return _t_result(a.mean() - b.mean(), np.sqrt(sp2 * (1 / na + 1 / nb)), na + nb - 2)


def t_two_sample_welch(a: np.ndarray, b: np.ndarray) -> FreqResult:
    """Difference in means ``a - b``, Welch t with Satterthwaite degrees of freedom."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return _t_result(a.mean() - b.mean(), np.sqrt(va + vb), df)


def proportion_wilson(events: int, n: int) -> FreqResult:
    """Proportion (in percent) with the Wilson score interval; p tests proportion = 0.5."""
    p_hat = events / n
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    centre = (p_hat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p_hat * (1 - p_hat) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    p = float(stats.binomtest(events, n, 0.5).pvalue)
    return FreqResult(100 * p_hat, 100 * (centre - half), 100 * (centre + half), p)


def proportion_wald(events: int, n: int) -> FreqResult:
    """Proportion (in percent) with the Wald interval p +/- z sqrt(p(1-p)/n)."""
    p_hat = events / n
    z = stats.norm.ppf(0.5 + LEVEL / 2)
    half = z * np.sqrt(p_hat * (1 - p_hat) / n)
    p = float(2 * stats.norm.sf(abs(p_hat - 0.5) / np.sqrt(0.25 / n)))
    return FreqResult(100 * p_hat, 100 * (p_hat - half), 100 * (p_hat + half), p)


PROCEDURES: dict[str, Callable[..., FreqResult]] = {
    "t_one_sample": t_one_sample,
    "t_paired": t_paired,
    "t_two_sample_pooled": t_two_sample_pooled,
    "t_two_sample_welch": t_two_sample_welch,
    "proportion_wilson": proportion_wilson,
    "proportion_wald": proportion_wald,
}
