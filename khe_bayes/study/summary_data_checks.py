"""Posterior-predictive checks of the summary-data model against the printed intervals and p
bounds.

For each posterior draw of a reading's fit, the sample summaries are replicated from the
model (sample mean Normal(mu, sd * sqrt(deff / n)), sample SD from its scaled chi-square; each
summarised quantity independently, an approximation for quantities that share patients), the
paper's procedure under the reading is re-run (t intervals, pooled or Welch, or the two groups'
means), and the replicated printed pair and p-value are compared with what was printed:

- ``ppp_lower``, ``ppp_upper``: two-sided mid-p posterior predictive p-values of each printed
  end, replications rounded as printed (``ppc.ppp_two_sided``);
- ``share_p_bound_met``: the share of replications whose p-value meets the printed bound. It is
  a predictive probability of the printed event, reported under that name, not a p-value.

Verdict rule (:data:`RULE`, ppc.VerdictRule.combined): the smaller of the two ppp values is
consistent if >= 0.05, tension in [0.005, 0.05), inconsistent below; a printed p bound met in
fewer than 0.5% of replications makes the verdict inconsistent, in fewer than 5% tension (rules
on a share of replications, named as such).

The model-averaged check replicates from every reading in proportion to its posterior weight;
the per-reading checks condition on each reading (a reading excluded because its own test
contradicts its p bound is fitted without the p bounds, so that its check can show it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from khe_bayes.study.ppc import VerdictRule, p_bound_note, ppp_two_sided
from khe_bayes.study.summary_data import QUANTITIES, Block, reading_map
from khe_bayes.study.summary_data_fit import ReadingFit, _draws

RULE = VerdictRule()


def _simulate(fit: ReadingFit, block: Block, n_draws: int, rng) -> dict[str, dict]:
    mean = _draws(fit.idata, "quantity_mean")
    sd = _draws(fit.idata, "quantity_sd")
    deff = _draws(fit.idata, "quantity_deff")
    idx = rng.choice(mean.shape[0], size=n_draws, replace=mean.shape[0] < n_draws)
    out = {}
    for j, q in enumerate(QUANTITIES[block.name]):
        n = block.sizes.get(q, block.sizes["all"])
        m, s, d = mean[idx, j], sd[idx, j], deff[idx, j]
        ybar = m + s * np.sqrt(d / n) * rng.standard_normal(n_draws)
        sample_sd = s * np.sqrt(rng.chisquare(n - 1, n_draws) / (n - 1))
        out[q] = {"mean": ybar, "sd": sample_sd, "n": n}
    return out


def _two_sample(a: dict, b: dict, welch: bool = False):
    d = a["mean"] - b["mean"]
    if welch:
        va, vb = a["sd"] ** 2 / a["n"], b["sd"] ** 2 / b["n"]
        se = np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    else:
        df = a["n"] + b["n"] - 2
        sp = np.sqrt(((a["n"] - 1) * a["sd"] ** 2 + (b["n"] - 1) * b["sd"] ** 2) / df)
        se = sp * np.sqrt(1 / a["n"] + 1 / b["n"])
    return d, se, df


def replicate_statement(statement, reading, sims: dict, sizes) -> pd.DataFrame:
    """Replicated printed pair (exact) and p-value of one statement under one reading."""
    rm = reading_map(statement, reading, sizes)
    if rm.kind == "one_sample":
        q = sims[rm.quantities[0]]
        est, se, df = q["mean"], q["sd"] / np.sqrt(q["n"]), q["n"] - 1
    elif rm.kind in ("pooled", "welch"):
        a, b = (sims[n] for n in rm.quantities)
        est, se, df = _two_sample(a, b, welch=rm.kind == "welch")
    else:
        est = se = df = None
    if est is not None:
        half = stats.t.ppf(0.975, df) * se
        lower, upper = est - half, est + half
        p_same = 2 * stats.t.sf(np.abs(est / se), df)
    else:
        lower, upper = sims[rm.quantities[0]]["mean"], sims[rm.quantities[1]]["mean"]
        p_same = None
    if rm.p_test == "same":
        p = p_same
    else:
        if rm.p_test == "one_sample":
            q = sims[rm.p_quantities[0]]
            t, df2 = q["mean"] / (q["sd"] / np.sqrt(q["n"])), q["n"] - 1
        else:
            d, se2, df2 = _two_sample(*(sims[n] for n in rm.p_quantities))
            t = d / se2
        p = 2 * stats.t.sf(np.abs(t), df2)
        if rm.p_positive:  # a result of the other sign does not reproduce the printed statement
            p = np.where(t > 0, p, 1.0)
    return pd.DataFrame({"lower": lower, "upper": upper, "p": p})


def _holds(relation: str, p: np.ndarray, bound: float) -> np.ndarray:
    ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
    return ops[relation](p, bound)


def _compare(statement, reps: pd.DataFrame) -> dict:
    ci, pb = statement.ci, statement.p
    row = {
        "reported_lower": ci.lower,
        "reported_upper": ci.upper,
        "reported_p": f"p {pb.relation} {pb.bound:g}" if pb else "",
        "n_replications": len(reps),
    }
    for part, observed in (("lower", ci.lower), ("upper", ci.upper)):
        x = reps[part].to_numpy(float)
        row[f"rep_{part}_q2.5"], row[f"rep_{part}_q97.5"] = np.quantile(x, [0.025, 0.975])
        row[f"ppp_{part}"] = ppp_two_sided(x, observed, ci.decimals)
    share = (
        float(np.mean(_holds(pb.relation, reps["p"].to_numpy(float), pb.bound))) if pb else np.nan
    )
    row["share_p_bound_met"] = share
    row["p_bound"] = p_bound_note(share)
    smallest = min(row["ppp_lower"], row["ppp_upper"])
    row["verdict"] = RULE.combined(smallest, share)
    return row


def summary_data_checks(
    blocks: list[Block], fits: list[ReadingFit], n_draws: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """One row per statement for the model-averaged check and one per (statement, joint
    reading) conditional on the reading."""
    rng = np.random.default_rng(seed)
    rows = []
    for block in blocks:
        group = [f for f in fits if f.block == block.name]
        sims = {id(f): _simulate(f, block, n_draws, rng) for f in group}
        for st in block.statements:
            per_fit = {}
            for f in group:
                reading = next(r for r in st.readings if r.id == f.joint[st.statistic])
                per_fit[id(f)] = replicate_statement(st, reading, sims[id(f)], block.sizes)
                rows.append(
                    {
                        "block": block.name,
                        "statistic": st.statistic,
                        "check": "given reading",
                        "reading": f.joint[st.statistic],
                        "joint_reading": f.label,
                        "posterior_weight": f.posterior_weight,
                        "p_bounds_in_fit": not f.excluded,
                        **_compare(st, per_fit[id(f)]),
                    }
                )
            weighted = [f for f in group if f.posterior_weight > 0]
            counts = rng.multinomial(n_draws, [f.posterior_weight for f in weighted])
            mixed = pd.concat(
                [
                    per_fit[id(f)].sample(n=c, replace=True, random_state=rng)
                    for f, c in zip(weighted, counts, strict=True)
                    if c > 0
                ],
                ignore_index=True,
            )
            rows.append(
                {
                    "block": block.name,
                    "statistic": st.statistic,
                    "check": "model-averaged",
                    "reading": "all (posterior weights)",
                    "joint_reading": "",
                    "posterior_weight": 1.0,
                    "p_bounds_in_fit": True,
                    **_compare(st, mixed),
                }
            )
    return pd.DataFrame(rows)
