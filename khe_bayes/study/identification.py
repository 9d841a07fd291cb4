"""Identification: which estimands do the published numbers pin down, and which are set by the
reconstruction's assumptions?

Two measures per scalar estimand of a model pooled over M reconstructed datasets:

- **contraction** ``1 - T / prior variance``: how much the posterior (Rubin's total variance T,
  :mod:`khe_bayes.toolkit.pooling`) narrowed the prior. Near 0 the posterior is the prior: the data
  (published or reconstructed) say nothing about the estimand. The prior variance is computed
  from forward draws of the model's prior (:func:`prior_moments`).
- **reconstruction share** ``(1 + 1/M) B / T``: the part of the posterior variance that comes
  from the spread of the estimate across datasets. Every dataset draws its generator settings
  (the assumptions of :mod:`khe_bayes.study.reconstruct`) afresh from their priors, so this is the
  spread of the estimate across generator settings: large means the answer depends on what was
  assumed about the unreported patient data, not on the published numbers.

Rule (:data:`RULE`), applied to every scalar:

- **set by assumptions**: reconstruction share >= 0.5, or contraction < 0.5 while the
  posterior mean stays within one prior SD of the prior mean (a posterior that moved further
  than that was moved by the data, even if it is not narrower than the prior: with a true
  between-center SD far in the prior's tail the posterior can be wider than the prior);
- **determined by the published numbers**: contraction >= 0.9 and reconstruction share < 0.2;
- **partly** determined otherwise;
- and, for reconstructed data only, a quantity the abstract reports nothing about
  (:data:`UNREPORTED`: everything between-center, since no per-center number is published) is
  **set by assumptions** whatever the two measures say: the pseudo-data's center differences
  were put there by the generator (``center_heterogeneity``, ``center_sizes``), so a posterior
  that contracts is learning the assumption, not the study.

With the user's own patient data (one dataset, no reconstruction) the share is 0 and the label
says "by the data" instead of "by the published numbers". A variable with several elements gets
the least-determined label of its elements (:func:`variable_labels`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm

SET = "set by assumptions"
PARTLY = "partly"
DETERMINED = "determined by the published numbers"
DETERMINED_BY_DATA = "determined by the data"
ORDER = {SET: 0, PARTLY: 1, DETERMINED: 2, DETERMINED_BY_DATA: 2}

CONTRACTION_SET = 0.5
SHIFT_MOVED = 1.0  # |posterior mean - prior mean| / prior SD
SHARE_SET = 0.5
CONTRACTION_DETERMINED = 0.9
SHARE_DETERMINED = 0.2

# variables about which the abstract reports nothing (no per-center numbers are published)
UNREPORTED = frozenset({"center_sd", "center_response_rate", "center_effect", "center_z"})

RULE = (
    f"'{SET}' when the prior-to-posterior contraction (1 - posterior variance / prior variance) "
    f"is below {CONTRACTION_SET} while the posterior mean is within {SHIFT_MOVED:g} prior SD of "
    f"the prior mean, or when the reconstruction's share of the posterior variance (its "
    f"spread across datasets, each with generator settings drawn afresh from the assumptions' "
    f"priors) is at least {SHARE_SET}; '{DETERMINED}' when the contraction is at least "
    f"{CONTRACTION_DETERMINED} and the share below {SHARE_DETERMINED}; '{PARTLY}' otherwise. "
    f"With reconstructed data, between-center quantities ({', '.join(sorted(UNREPORTED))}) are "
    f"'{SET}' whatever the measures say: the abstract publishes no per-center number, so what "
    f"the pseudo-data say about centers was put there by the generator's assumptions. A "
    f"variable with several elements takes the least-determined label of its elements."
)


def scalar_labels(name: str, dims: tuple[str, ...], coords: dict) -> list[str]:
    """Row labels of a variable's elements, as in the pooled summaries: ``name[a, b]``."""
    if not dims:
        return [name]
    grids = [list(coords[d]) for d in dims]
    return [
        f"{name}[{', '.join(str(g[i]) for g, i in zip(grids, idx, strict=True))}]"
        for idx in np.ndindex(*[len(g) for g in grids])
    ]


def prior_variances(
    model: pm.Model, var_names: list[str], draws: int = 4000, seed: int = 0
) -> dict[str, float]:
    """Variance of each scalar element of ``var_names`` under the model's prior (forward draws
    with :func:`pymc.draw`; the observed data do not enter)."""
    return {k: v for k, (_, v) in prior_moments(model, var_names, draws, seed).items()}


def prior_moments(
    model: pm.Model, var_names: list[str], draws: int = 4000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """(mean, variance) of each scalar element of ``var_names`` under the model's prior."""
    values = pm.draw([model[v] for v in var_names], draws=draws, random_seed=seed)
    out: dict[str, tuple[float, float]] = {}
    for name, arr in zip(var_names, values, strict=True):
        dims = model.named_vars_to_dims.get(name, ())
        arr = np.asarray(arr, float).reshape(draws, -1)
        for label, column in zip(scalar_labels(name, dims, model.coords), arr.T, strict=True):
            out[label] = (float(np.mean(column)), float(np.var(column)))
    return out


def label(contraction: float, share: float, *, from_data: bool = False, shift: float = 0.0) -> str:
    """The identification label under :data:`RULE`; ``shift`` is |posterior mean - prior mean|
    in prior SDs."""
    unmoved = not np.isfinite(contraction) or contraction < CONTRACTION_SET
    if share >= SHARE_SET or (unmoved and not shift >= SHIFT_MOVED):
        return SET
    if contraction >= CONTRACTION_DETERMINED and share < SHARE_DETERMINED:
        return DETERMINED_BY_DATA if from_data else DETERMINED
    return PARTLY


def identification_table(
    variance_share: pd.DataFrame,
    prior_variance: dict[tuple[str, str], float],
    *,
    from_data: bool = False,
    unreported: frozenset[str] = UNREPORTED,
    prior_mean: dict[tuple[str, str], float] | None = None,
    posterior_mean: dict[tuple[str, str], float] | None = None,
) -> pd.DataFrame:
    """One row per scalar of ``variance_share`` (``pooling.reconstruction_variance_share``, with
    a ``model`` column): contraction, share, the spread of the estimate across datasets (SD of
    the per-dataset posterior means, i.e. across generator settings), the label and the reason.
    ``unreported`` applies only to reconstructed data (``from_data`` False)."""
    rows = []
    for r in variance_share.itertuples(index=False):
        prior_var = prior_variance.get((r.model, r.quantity), np.nan)
        contraction = 1 - r.total_variance / prior_var if prior_var > 0 else np.nan
        key = (r.model, r.quantity)
        if prior_mean and posterior_mean and key in prior_mean and key in posterior_mean:
            shift = abs(posterior_mean[key] - prior_mean[key]) / np.sqrt(prior_var)
        else:
            shift = 0.0
        if not from_data and variable_of(r.quantity) in unreported:
            forced = {"label": SET, "reason": "not reported in the abstract (per-center)"}
        else:
            forced = {}
        rows.append(
            {
                "model": r.model,
                "quantity": r.quantity,
                "prior_sd": float(np.sqrt(prior_var)),
                "posterior_sd": float(np.sqrt(r.total_variance)),
                "contraction": contraction,
                "prior_shift_sd": shift,
                "reconstruction_share": r.reconstruction_share,
                "spread_across_datasets_sd": float(np.sqrt(r.between_variance)),
                "label": label(
                    contraction, r.reconstruction_share, from_data=from_data, shift=shift
                ),
                "reason": _reason(contraction, r.reconstruction_share, shift),
            }
            | forced
        )
    return pd.DataFrame(rows)


def _reason(contraction: float, share: float, shift: float = 0.0) -> str:
    parts = []
    if (not np.isfinite(contraction) or contraction < CONTRACTION_SET) and shift < SHIFT_MOVED:
        parts.append(
            f"contraction {contraction:.2f} < {CONTRACTION_SET} and posterior mean within "
            f"{SHIFT_MOVED:g} prior SD of the prior mean"
        )
    if share >= SHARE_SET:
        parts.append(f"reconstruction share {share:.2f} >= {SHARE_SET}")
    if parts:
        return "; ".join(parts)
    if contraction >= CONTRACTION_DETERMINED and share < SHARE_DETERMINED:
        return f"contraction {contraction:.2f}, share {share:.2f}"
    return f"contraction {contraction:.2f}, share {share:.2f} (between the thresholds)"


def variable_of(quantity: str) -> str:
    return quantity.split("[", 1)[0]


def variable_labels(table: pd.DataFrame) -> dict[tuple[str, str], str]:
    """(model, variable) -> the least-determined label of its elements."""
    out: dict[tuple[str, str], str] = {}
    for r in table.itertuples(index=False):
        key = (r.model, variable_of(r.quantity))
        if key not in out or ORDER[r.label] < ORDER[out[key]]:
            out[key] = r.label
    return out
