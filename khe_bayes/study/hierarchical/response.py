"""Response at 6 and 12 months: logistic regression with a center random intercept.

Model, for patient i at center c(i) seen at visit v::

    logit P(response) = intercept[v] + kmp_effect * kmp_i + center_effect[c(i)]
                        + patient_effect[i]
    center_effect  = center_sd * center_z,   center_z ~ Normal(0, 1)    (non-centered)
    patient_effect = patient_sd * patient_z, patient_z ~ Normal(0, 1)   (non-centered)

Both visits are fitted jointly so they share the center effects (a center that does well at
6 months tends to at 12), with a visit-specific intercept. A patient is seen twice, so the two
responses of one patient are not independent: the patient effect carries that (a patient who did
not respond at 6 months is more likely not to at 12).

Estimands (Deterministics), population-averaged over the patient effect (integrated with
Gauss-Hermite quadrature, 21 nodes), so they are response probabilities of a random patient:

- ``response_rate`` [visit]: averaged over the cohort's own KMP mix, at a typical center
  (center effect 0);
- ``response_rate_by_kmp`` [visit, kmp_status]: the same for a KMP and a non-KMP patient;
- ``center_response_rate`` [visit, center]: averaged over the cohort's KMP mix at each center
  (shrunk towards the typical center by the partial pooling);
- ``center_sd``: the between-center SD of the log-odds; ``patient_sd`` the between-patient SD.

Default priors and why: with 50/52 and 51/52 responders the likelihood is nearly separated, so
flat priors would let the intercept run off to +infinity. ``intercept ~ Normal(1, 1.5)`` puts
95% of its mass on response probabilities 0.14-0.98 before data (weakly informative towards
response; the data pull it up); ``kmp_effect ~ Normal(0, 1)`` says a KMP odds ratio beyond
e^2 = 7.4 either way is unlikely; ``center_sd ~ HalfNormal(1)`` allows sizeable but not
absurd between-center variation on the log-odds scale; ``patient_sd ~ HalfNormal(1)`` the same
for patients (with 3 non-responses in 104 observations the data say little about it; the prior
keeps it from running off).

Two builders with the same priors, estimands and posterior: :func:`build_response_model`
(the patient effect sampled, one Bernoulli row per observation; what the reanalysis fits) and
:func:`build_response_model_cells` (the patient effect integrated out, below). The cell model
is not the default because it is slower here: with 52 patients and 104 observations the
per-patient model's gradient costs about 104 logistics, the cell model's 2 x 12 x 73 (center x
KMP x visit x quadrature node), measured at 2.5-4.5x the per-patient gradient time (numba,
load 3-6 on 2 shared cores, issue 18); it pays only when patients far outnumber cells.

Likelihood by sufficient statistics (:func:`build_response_model_cells`). The patient effect
enters only through a patient's own visits, so it is integrated out: a patient at center c with
KMP status k and response pattern r (each visit 1, 0 or not seen) has likelihood::

    P(r | c, k) = E_Z[ prod_{seen v} Bernoulli(r_v | invlogit(eta_{c,k,v} + patient_sd * Z)) ],
    Z ~ Normal(0, 1),

computed by the trapezoidal rule on a fixed grid (z from -9 to 9 in steps of 0.25, 73 nodes),
which converges geometrically for a smooth integrand with normal tails: the error in a cell's
log-probability is < 1e-9 for patient_sd <= 3 (a HalfNormal(1) 99.7% quantile) and about 3e-6
at patient_sd = 5, where 21-node Gauss-Hermite is off by up to 2e-3 at patient_sd = 3 for a
product of two logistics. tests/test_hierarchical_structure.py checks the log density against
scipy's adaptive quadrature, patient by patient. Patients in the same cell (center x KMP status
x pattern; 9 patterns, missing visits included) share one term, so the log-likelihood is
``sum_cells count * log P(r | c, k)`` and the posterior of every other parameter is that of the
model with a sampled ``patient_z`` per patient (:func:`build_response_model`: same
priors, the same likelihood once integrated; ``patient_sd`` keeps its meaning;
tests/test_response_marginal_slow.py compares the posterior means by sampling both).
The cell grid is fixed by the centers, so the model's shapes do not depend on the dataset's
response or missingness pattern and one compiled sampler serves every reconstruction.

The observed variable ``response_counts`` [center, kmp_status, pattern] has a posterior
predictive: within each (center, KMP status, visits seen) group of n patients, the counts over
the response patterns are Multinomial(n, P(r | c, k)), which is the law of the tabulated
responses of n patients each given their own patient effect.
:func:`replicated_responses` turns replicated counts back into per-patient responses (patients
of one group are exchangeable, so they are assigned in a random order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pydantic import BaseModel, ConfigDict

from khe_bayes.study.hierarchical.common import (
    KMP_STATUS,
    center_effects,
    center_index,
    likelihood_weights,
    long_format,
    numeric,
    observed_or_weighted,
)
from khe_bayes.toolkit.priors import Prior, prior

VISITS = ("6m", "12m")

# a patient's response pattern over the visits: 1 responded, 0 did not, None not seen
_OUTCOMES = (1, 0, None)
PATTERNS: tuple[tuple[int | None, ...], ...] = tuple((a, b) for a in _OUTCOMES for b in _OUTCOMES)
PATTERN_LABELS: tuple[str, ...] = tuple(
    ",".join(f"{v}={'-' if y is None else y}" for v, y in zip(VISITS, p, strict=True))
    for p in PATTERNS
)
_SEEN = np.array([[y is not None for y in p] for p in PATTERNS], dtype=float)  # pattern x visit
_Y = np.array([[y or 0 for y in p] for p in PATTERNS], dtype=float)
# patterns with the same visits seen form a missingness class
_CLASS = np.array([sum(int(y is not None) << v for v, y in enumerate(p)) for p in PATTERNS])


class ResponsePriors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    intercept: Prior = prior("Normal", mu=1.0, sigma=1.5)
    kmp_effect: Prior = prior("Normal", mu=0.0, sigma=1.0)
    center_sd: Prior = prior("HalfNormal", sigma=1.0)
    patient_sd: Prior = prior("HalfNormal", sigma=1.0)


# Gauss-Hermite nodes and weights for E[f(Z)], Z ~ Normal(0, 1)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(21)
_GH_W = _GH_W / _GH_W.sum()


# trapezoidal rule for the likelihood's E[f(Z)], Z ~ Normal(0, 1) (see the module docstring)
_LIK_X = np.linspace(-9.0, 9.0, 73)
_LIK_W = np.exp(-0.5 * _LIK_X**2) / np.exp(-0.5 * _LIK_X**2).sum()


def _population_average(logit, patient_sd):
    """E over patient ~ Normal(0, patient_sd) of invlogit(logit + patient); last axis added."""
    nodes = patient_sd * _GH_X
    return (pm.math.invlogit(logit[..., None] + nodes) * _GH_W).sum(axis=-1)


def response_long(ipd: pd.DataFrame) -> pd.DataFrame:
    """One row per (patient, visit) with an observed response."""
    long = long_format(ipd, "response_", VISITS, "response")
    return long.astype({"response": int})


def patient_cells(ipd: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient's cell: center code, KMP status (0/1), pattern (index into PATTERNS)."""
    center, _ = center_index(ipd)
    kmp = numeric(ipd["kmp"]).astype(int)
    pattern = np.zeros(len(ipd), dtype=int)
    for v, visit in enumerate(VISITS):
        y = numeric(ipd[f"response_{visit}"])
        # base-3 digit of visit v in PATTERNS' order: 0 responded, 1 did not, 2 not seen
        digit = np.where(np.isnan(y), 2, np.where(y == 1, 0, 1))
        pattern = pattern + digit * 3 ** (len(VISITS) - 1 - v)
    return center, kmp, pattern


def cell_counts(ipd: pd.DataFrame) -> np.ndarray:
    """Patients per (center, KMP status, response pattern): the sufficient statistic."""
    center, kmp, pattern = patient_cells(ipd)
    counts = np.zeros((len(center_index(ipd)[1]), len(KMP_STATUS), len(PATTERNS)), dtype=int)
    np.add.at(counts, (center, kmp, pattern), 1)
    return counts


def cell_log_probability(intercept, kmp_effect, center_effect, patient_sd):
    """log P(pattern | center, KMP status) [center, kmp_status, pattern] with the patient effect
    integrated out by the trapezoidal rule (``_LIK_X``); a visit not seen contributes 1.

    Summed in probability space (a logistic per center x KMP x visit x node, then one product
    and one weighted sum per pattern, one log per cell): a log-sum-exp per cell and node made
    the gradient about 10x dearer. The complementary probability is its own logistic, so it
    keeps full relative precision when the response probability is near 1."""
    eta = (
        intercept[None, None, :, None]
        + kmp_effect * np.array([0.0, 1.0])[None, :, None, None]
        + center_effect[:, None, None, None]
        + patient_sd * _LIK_X[None, None, None, :]
    )  # center x kmp x visit x node
    yes, no = pm.math.invlogit(eta), pm.math.invlogit(-eta)
    by_outcome = {1: yes, 0: no}
    columns = []
    for pattern in PATTERNS:  # E[prod over seen visits], weighted sum over the nodes
        seen = [by_outcome[y][:, :, v, :] for v, y in enumerate(pattern) if y is not None]
        if not seen:
            columns.append(pt.ones(eta.shape[:2]))
            continue
        product = seen[0] if len(seen) == 1 else seen[0] * seen[1]
        columns.append(pt.dot(product, _LIK_W))
    return pt.log(pt.stack(columns, axis=-1))


def _counts_logp(value, log_p, _n):
    return value * log_p


def _counts_random(log_p, n, rng=None, size=None):
    """Multinomial counts over the patterns within each (center, KMP, visits seen) group."""
    log_p, n = np.asarray(log_p), np.asarray(n)
    out = np.zeros(n.shape, dtype=np.int64)
    for cls in np.unique(_CLASS):
        at = cls == _CLASS
        total = n[..., at].sum(axis=-1)
        p = np.exp(log_p[..., at])
        p = p / p.sum(axis=-1, keepdims=True)  # sums to 1 up to quadrature rounding
        out[..., at] = rng.multinomial(total, p)
    return out


def replicated_responses(
    ipd: pd.DataFrame, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Per-patient responses [patient, visit] (nan where not seen) from replicated cell counts:
    each (center, KMP status, visits seen) group's patients get the group's replicated patterns
    in a random order (they are exchangeable, so this is the law of simulating each patient)."""
    center, kmp, pattern = patient_cells(ipd)
    cls = _CLASS[pattern]
    out = np.full((len(ipd), len(VISITS)), np.nan)
    for c, k, g in {(int(a), int(b), int(x)) for a, b, x in zip(center, kmp, cls, strict=True)}:
        members = np.flatnonzero((center == c) & (kmp == k) & (cls == g))
        at = np.flatnonzero(g == _CLASS)
        patterns = np.repeat(at, counts[c, k, at])
        if len(patterns) != len(members):
            raise ValueError("replicated counts do not match the dataset's cells")
        patterns = rng.permutation(patterns)
        for v in range(len(VISITS)):
            out[members, v] = np.where(_SEEN[patterns, v] == 1, _Y[patterns, v], np.nan)
    return out


def build_response_model_cells(ipd: pd.DataFrame, priors: ResponsePriors | None = None) -> pm.Model:
    """The response model with the patient effect integrated out, likelihood over cells (see
    the module docstring); same priors, estimands and posterior as :func:`build_response_model`."""
    priors = priors or ResponsePriors()
    _, centers = center_index(ipd)
    coords = {
        "center": centers,
        "visit": list(VISITS),
        "kmp_status": list(KMP_STATUS),
        "pattern": list(PATTERN_LABELS),
    }
    with pm.Model(coords=coords) as model:
        intercept = priors.intercept.create("intercept", dims="visit")
        kmp_effect = priors.kmp_effect.create("kmp_effect")
        center_effect = center_effects(priors.center_sd)
        patient_sd = priors.patient_sd.create("patient_sd")
        counts = pm.Data("cell_count", cell_counts(ipd), dims=("center", "kmp_status", "pattern"))
        log_p = cell_log_probability(intercept, kmp_effect, center_effect, patient_sd)
        pm.CustomDist(
            "response_counts",
            log_p,
            counts,
            logp=_counts_logp,
            random=_counts_random,
            observed=counts,
            dtype="int64",
            dims=("center", "kmp_status", "pattern"),
        )

        status_logit = intercept[:, None] + kmp_effect * np.array([0.0, 1.0])[None, :]
        by_kmp = _population_average(status_logit, patient_sd)
        pm.Deterministic("response_rate_by_kmp", by_kmp, dims=("visit", "kmp_status"))
        n_by_status = counts.sum(axis=(0, 2))
        share_kmp = n_by_status[1] / n_by_status.sum()
        mix = pt.stack([1 - share_kmp, share_kmp])
        pm.Deterministic("response_rate", (by_kmp * mix).sum(axis=1), dims="visit")
        at_center = _population_average(
            status_logit[:, None, :] + center_effect[None, :, None], patient_sd
        )  # visit x center x status
        pm.Deterministic(
            "center_response_rate", (at_center * mix).sum(axis=2), dims=("visit", "center")
        )
    return model


def build_response_model(
    ipd: pd.DataFrame, priors: ResponsePriors | None = None, keep: np.ndarray | None = None
) -> pm.Model:
    """The response model as the reanalysis fits it: the patient effect sampled (``patient_z``
    [patient], non-centered), one Bernoulli row per observed (patient, visit).

    ``keep`` (a boolean per patient row): only those patients' responses enter the likelihood
    (and the cohort KMP mix), as if the others were dropped, but with every shape kept: a
    patient or center left out keeps its effect, drawn from its prior, and every other
    quantity has the posterior of the dropped-rows model (leave-one-center-out)."""
    priors = priors or ResponsePriors()
    center, centers = center_index(ipd)
    kmp = numeric(ipd["kmp"])
    long = response_long(ipd)
    weight = likelihood_weights(ipd, keep)
    coords = {
        "center": centers,
        "patient": list(ipd["patient_id"].astype(str)),
        "visit": list(VISITS),
        "kmp_status": list(KMP_STATUS),
        "obs": np.arange(len(long)),
    }
    with pm.Model(coords=coords) as model:
        intercept = priors.intercept.create("intercept", dims="visit")
        kmp_effect = priors.kmp_effect.create("kmp_effect")
        center_effect = center_effects(priors.center_sd)
        patient_sd = priors.patient_sd.create("patient_sd")
        patient_z = pm.Normal("patient_z", 0.0, 1.0, dims="patient")
        p_idx = pm.Data("obs_patient", long["patient"].to_numpy(), dims="obs")
        v_idx = pm.Data("obs_visit", long["visit"].to_numpy(), dims="obs")
        kmp_data = pm.Data("kmp", kmp, dims="patient")
        center_data = pm.Data("patient_center", center, dims="patient")
        logit_p = (
            intercept[v_idx]
            + kmp_effect * kmp_data[p_idx]
            + center_effect[center_data[p_idx]]
            + patient_sd * patient_z[p_idx]
        )
        observed = pm.Data("response_observed", long["response"].to_numpy(), dims="obs")
        in_likelihood = None
        if weight is not None:
            in_likelihood = pm.Data("in_likelihood", weight[long["patient"].to_numpy()], dims="obs")
            patient_weight = pm.Data("patient_in_likelihood", weight, dims="patient")
        observed_or_weighted(
            pm.Bernoulli, "response", observed, in_likelihood, dims="obs", logit_p=logit_p
        )

        status_logit = intercept[:, None] + kmp_effect * np.array([0.0, 1.0])[None, :]
        by_kmp = _population_average(status_logit, patient_sd)
        pm.Deterministic("response_rate_by_kmp", by_kmp, dims=("visit", "kmp_status"))
        if weight is None:
            share_kmp = kmp_data.mean()
        else:
            share_kmp = (patient_weight * kmp_data).sum() / patient_weight.sum()
        mix = pt.stack([1 - share_kmp, share_kmp])
        pm.Deterministic("response_rate", (by_kmp * mix).sum(axis=1), dims="visit")
        at_center = _population_average(
            status_logit[:, None, :] + center_effect[None, :, None], patient_sd
        )
        pm.Deterministic(
            "center_response_rate", (at_center * mix).sum(axis=2), dims=("visit", "center")
        )
    return model
