"""Posterior-predictive checks against what the paper reported.

For each reported statistic (a printed percentage, or a 95% CI with its p-value bound) we take
replicated datasets from the posterior predictive distribution, re-run on each the frequentist
procedure the paper most plausibly used, and ask whether the reported numbers look like a
typical replication.

A *replication table* has one row per (draw, statistic) with columns ``draw``, ``statistic``,
``interpretation`` (optional; blank means any), ``estimate``, ``lower``, ``upper``, ``p`` (NaN
where the procedure gives none). Any replicator
(aggregate counts here, IPD models elsewhere) produces one; :func:`compare_reported` turns it
into the ppc_reported table.

Verdict rule (stated once, used everywhere; see :class:`VerdictRule`): for each reported number
(the estimate, each CI endpoint) the two-sided posterior predictive p-value is
``ppp = 2 * min(P(T_rep < T_obs) + P(T_rep = T_obs)/2, P(T_rep > T_obs) + P(T_rep = T_obs)/2)``
(mid-p for ties, which matter for counts). The smallest of these is the check's evidence:
>= 0.05 consistent, in [0.005, 0.05) tension, < 0.005 inconsistent. With a p-value bound we
also report the share of replications whose p-value satisfies it, under that name: it is a
predictive probability of the printed event, not a p-value, named in ``p_bound`` (met often /
rarely: < 5% / almost never: < 0.5%); the verdict is the worse of the ppp verdict and that rule
(almost never: inconsistent; rarely: tension), see :meth:`VerdictRule.combined`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from khe_bayes.study.evidence import (
    Evidence,
    IntervalRecord,
    PBoundRecord,
    PercentageRecord,
    rounding_interval,
)


@dataclass(frozen=True)
class VerdictRule:
    consistent_at: float = 0.05
    inconsistent_below: float = 0.005

    def verdict(self, evidence: float) -> str:
        if not np.isfinite(evidence):
            return "not checked"
        if evidence >= self.consistent_at:
            return "consistent"
        if evidence >= self.inconsistent_below:
            return "tension"
        return "inconsistent"

    def combined(self, smallest_ppp: float, share_p_bound_met: float) -> str:
        """The worse of the ppp verdict and the p-bound rule: a printed p bound met in fewer than
        ``inconsistent_below`` of replications is inconsistent, fewer than ``consistent_at``
        tension (thresholds on a share of replications, not on a p-value)."""
        order = ["consistent", "tension", "inconsistent"]
        verdicts = [self.verdict(smallest_ppp)]
        if np.isfinite(share_p_bound_met):
            verdicts.append(self.verdict(share_p_bound_met))
        known = [v for v in verdicts if v in order]
        return max(known, key=order.index) if known else verdicts[0]

    def describe(self) -> str:
        return (
            f"consistent if the smallest two-sided posterior predictive p-value (estimate, CI "
            f"endpoints) is >= {self.consistent_at}; inconsistent if < "
            f"{self.inconsistent_below}; tension in between. A printed p bound is checked by the "
            f"share of replications meeting it (a share, not a p-value): met in fewer than "
            f"{self.inconsistent_below:.1%} of replications makes the verdict inconsistent, "
            f"fewer than {self.consistent_at:.0%} tension"
        )


@dataclass(frozen=True)
class ReportedStatistic:
    """What the paper printed for one statistic, under one interpretation."""

    statistic: str
    interpretation: str
    test: str
    estimate: float | None
    lower: float | None = None
    upper: float | None = None
    decimals: int | None = 0
    p_relation: str | None = None
    p_bound: float | None = None
    quote: str = ""

    def p_holds(self, p: np.ndarray) -> np.ndarray:
        ops = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}
        return ops[self.p_relation](p, self.p_bound)


def reported_statistics(
    evidence: Evidence, *, all_interpretations: bool = False
) -> list[ReportedStatistic]:
    """Every reported interval (joined with its p-value bound) and percentage in the registry.

    The estimate of a CI is its midpoint (the abstract prints no point estimates); that is exact
    for t and Wald intervals and close for the others.
    """
    out: list[ReportedStatistic] = []
    bounds = {r.statistic: r for r in evidence.record if isinstance(r, PBoundRecord)}
    for r in evidence.record:
        interps = r.interpretations if all_interpretations else [r.default_interpretation]
        interps = [i for i in interps if i is not None and i.plausible]
        if isinstance(r, IntervalRecord):
            p = bounds.get(r.statistic)
            for i in interps:
                out.append(
                    ReportedStatistic(
                        statistic=r.statistic,
                        interpretation=i.id,
                        test=i.test or "",
                        estimate=r.midpoint,
                        lower=r.lower,
                        upper=r.upper,
                        decimals=r.decimals,
                        p_relation=p.relation if p else None,
                        p_bound=p.bound if p else None,
                        quote=r.quote,
                    )
                )
        elif isinstance(r, PercentageRecord):
            for i in interps:
                out.append(
                    ReportedStatistic(
                        statistic=r.statistic,
                        interpretation=i.id,
                        test=i.test or "percentage",
                        estimate=r.percent,
                        decimals=r.decimals,
                        quote=r.quote,
                    )
                )
    return out


def p_bound_note(share: float, rule: VerdictRule = VerdictRule()) -> str:
    """How often replications meet a printed p bound (a share, named as such)."""
    if not np.isfinite(share):
        return ""
    if share >= rule.consistent_at:
        return "met often"
    if share >= rule.inconsistent_below:
        return "met rarely (< 5% of replications)"
    return "met almost never (< 0.5% of replications)"


def ppp_two_sided(replicated: np.ndarray, observed: float, decimals: int | None = None) -> float:
    """Two-sided mid-p posterior predictive p-value of ``observed`` among ``replicated``.

    With ``decimals``, replications are rounded as the paper printed them, so "equal" means
    "prints the same".
    """
    rep = np.asarray(replicated, dtype=float)
    rep = rep[np.isfinite(rep)]
    if rep.size == 0:
        return float("nan")
    if decimals is not None:
        rep = np.round(rep, decimals)
        lo, hi = rounding_interval(observed, decimals)
        below, above = np.mean(rep < lo), np.mean(rep > hi)
        equal = 1.0 - below - above
    else:
        below, above = np.mean(rep < observed), np.mean(rep > observed)
        equal = np.mean(rep == observed)
    return float(min(1.0, 2 * min(below + equal / 2, above + equal / 2)))


def compare_reported(
    reported: list[ReportedStatistic],
    replications: pd.DataFrame,
    rule: VerdictRule = VerdictRule(),
) -> pd.DataFrame:
    """One row per reported statistic: predictive distribution of the re-computed estimate, CI
    endpoints and p-value, the posterior predictive p-values, and the verdict."""
    rows = []
    for rs in reported:
        reps = replications[replications["statistic"] == rs.statistic]
        if "interpretation" in reps:
            reps = reps[reps["interpretation"].isin([rs.interpretation, "", None])]
        row: dict = {
            "statistic": rs.statistic,
            "interpretation": rs.interpretation,
            "test": rs.test,
            "reported_estimate": rs.estimate,
            "reported_lower": rs.lower,
            "reported_upper": rs.upper,
            "reported_p": f"p {rs.p_relation} {rs.p_bound:g}" if rs.p_relation else "",
            "n_replications": len(reps),
        }
        evidence_values = []
        for part, observed in (("estimate", rs.estimate), ("lower", rs.lower), ("upper", rs.upper)):
            values = reps[part].to_numpy(dtype=float) if part in reps else np.array([])
            finite = values[np.isfinite(values)]
            if observed is None or finite.size == 0:
                row[f"rep_{part}_q2.5"] = row[f"rep_{part}_q97.5"] = np.nan
                row[f"ppp_{part}"] = np.nan
                continue
            row[f"rep_{part}_q2.5"], row[f"rep_{part}_q97.5"] = np.quantile(finite, [0.025, 0.975])
            row[f"ppp_{part}"] = ppp_two_sided(finite, observed, rs.decimals)
            evidence_values.append(row[f"ppp_{part}"])
        if rs.p_relation and "p" in reps and np.isfinite(reps["p"].to_numpy(float)).any():
            p = reps["p"].to_numpy(dtype=float)
            p = p[np.isfinite(p)]
            row["rep_p_median"] = float(np.median(p))
            row["share_p_bound_met"] = float(np.mean(rs.p_holds(p)))
        else:
            row["rep_p_median"] = np.nan
            row["share_p_bound_met"] = np.nan
        row["p_bound"] = p_bound_note(row["share_p_bound_met"], rule)
        smallest = min(evidence_values) if evidence_values else float("nan")
        row["evidence"] = smallest
        row["verdict"] = (
            rule.combined(smallest, row["share_p_bound_met"]) if len(reps) else "no replicator"
        )
        rows.append(row)
    return pd.DataFrame(rows)


def replicate_counts(
    idata, outcomes: dict[str, tuple[str, str, int]], max_draws: int | None = None
) -> pd.DataFrame:
    """Replications of printed percentages from a count model's posterior predictive.

    ``outcomes`` maps an observed variable name (e.g. ``events_response_12m``) to the statistic
    it replicates, the interpretation it stands for and its denominator. The re-computed
    statistic is the percentage 100 k / n (no interval or p-value: the paper printed none).
    """
    frames = []
    pp = idata.posterior_predictive
    for var, (statistic, interpretation, n) in outcomes.items():
        k = np.asarray(pp[var].values).reshape(-1)
        if max_draws is not None:
            k = k[:max_draws]
        frames.append(
            pd.DataFrame(
                {
                    "draw": np.arange(k.size),
                    "statistic": statistic,
                    "interpretation": interpretation,
                    "estimate": 100.0 * k / n,
                    "lower": np.nan,
                    "upper": np.nan,
                    "p": np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
