"""Rank-normalized split R-hat and bulk/tail ESS (Vehtari et al. 2021) for many scalars at once.

The same estimators as arviz-stats (``az.rhat``, ``az.ess(method="bulk" | "tail")``) and the
same numbers (tests/test_convergence.py compares them to 1e-9), computed on one
(scalar, chain, draw) array: ranks, normal scores and autocovariances are vectorized over the
scalars, and Geyer's initial positive and monotone sequences are read off the pair sums
instead of a loop over lags. ArviZ applies its estimators one scalar at a time; for the ~30
reported scalars of a model that took ~50-80 ms a fit, which the convergence check of every
reconstructed dataset's quick fit (pooling.fit_dataset) paid on top of ~150 ms of sampling.
"""

from __future__ import annotations

import numpy as np
from arviz_stats.validate import validate_ci_prob
from scipy import stats
from scipy.fftpack import next_fast_len

_BLOM = 3 / 8  # rank offset of the normal scores (Blom 1958), as in arviz-stats


def _split(x: np.ndarray) -> np.ndarray:
    """(scalar, chain, draw) -> (scalar, 2 chain, draw // 2): each chain's halves as chains."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half :]], axis=1)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks of each scalar's draws (ties averaged)."""
    flat = x.reshape(x.shape[0], -1)
    rank = stats.rankdata(flat, method="average", axis=1)
    return stats.norm.ppf((rank - _BLOM) / (flat.shape[1] - 2 * _BLOM + 1)).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[2]
    between = n * x.mean(axis=2).var(axis=1, ddof=1)
    within = x.var(axis=2, ddof=1).mean(axis=1)
    return np.sqrt((between / within + n - 1) / n)


def rhat(x: np.ndarray) -> np.ndarray:
    """Rank-normalized split R-hat of each scalar: the larger of the bulk and the folded
    (tail) version. ``x``: (scalar, chain, draw), at least 2 chains and 4 draws."""
    split = _split(np.asarray(x, dtype=float))
    median = np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant scalar: nan, as ArviZ
        return np.maximum(_rhat(_z_scale(split)), _rhat(_z_scale(np.abs(split - median))))


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each scalar of (scalar, chain, draw) ``x`` (chains already split)."""
    k, m, n = x.shape
    total = m * n
    acov = np.fft.irfft(
        np.abs(np.fft.rfft(x - x.mean(axis=2, keepdims=True), n=next_fast_len(2 * n), axis=2)) ** 2,
        n=next_fast_len(2 * n),
        axis=2,
    )[:, :, :n]
    acov /= n
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + x.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant scalars, handled below
        rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    out = np.empty(k)
    last_pair = (n - 3) // 2  # the lag loop runs while 2 j - 1 < n - 3
    for i in range(k):
        if np.ptp(x[i]) < np.finfo(float).resolution:
            out[i] = total
            continue
        pairs = rho[i, 0 : 2 * last_pair + 2 : 2] + rho[i, 1 : 2 * last_pair + 2 : 2]
        # Geyer's initial positive sequence: pairs 1, 2, ... are read while the previous pair
        # sum is positive; c is the last pair read (the first non-positive one, or the limit)
        if pairs[0] <= 0 or last_pair < 1:
            c = 0
        else:
            stop = np.flatnonzero(pairs[1:] <= 0)
            c = int(stop[0]) + 1 if stop.size else last_pair
        # Geyer's initial monotone sequence over the pairs before c; pair c adds its even lag
        # (when it was kept, or when that lag alone is positive)
        monotone = np.minimum.accumulate(pairs[:c]).sum() if c else 0.0
        even = rho[i, 2 * c]
        tail = even if (c == 0 or pairs[c] >= 0 or even > 0) else 0.0
        tau = max(-1.0 + 2.0 * monotone + tail, 1 / np.log10(total))
        out[i] = total / tau
        if np.isnan(rho[i, : 2 * c + 2]).any():
            out[i] = np.nan
    return out


def ess_bulk(x: np.ndarray) -> np.ndarray:
    """Bulk ESS (rank-normalized split chains) of each scalar of (scalar, chain, draw) ``x``."""
    return _ess(_z_scale(_split(np.asarray(x, dtype=float))))


def ess_tail(x: np.ndarray, prob: float | None = None) -> np.ndarray:
    """Tail ESS of each scalar: the smaller ESS of the indicators of a draw falling at or below
    the ``1 - prob`` and the ``prob`` quantile (``prob`` by default arviz-stats'
    ``rcParams["stats.ci_prob"]``, as ``az.ess(method="tail")``)."""
    x = np.asarray(x, dtype=float)
    low, high = sorted((validate_ci_prob(prob), 1 - validate_ci_prob(prob)))
    flat = x.reshape(x.shape[0], -1)
    ess = []
    for p in (low, high):
        q = np.quantile(flat, p, axis=1)[:, None, None]
        ess.append(_ess(_split((x <= q).astype(float))))
    return np.minimum(*ess)


def stack_scalars(arrays: list[np.ndarray]) -> np.ndarray:
    """Arrays of shape (chain, draw, ...) as one (scalar, chain, draw) float array."""
    parts = [np.asarray(a, dtype=float) for a in arrays if np.size(a)]
    parts = [np.moveaxis(a.reshape(a.shape[0], a.shape[1], -1), 2, 0) for a in parts]
    return np.concatenate(parts, axis=0)
