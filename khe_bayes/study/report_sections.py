"""Report sections: each stage's results as text, tables and figures (no computation here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from khe_bayes.study import identification as id_
from khe_bayes.study.ipd_analysis import HEADLINE
from khe_bayes.study.ppc import VerdictRule
from khe_bayes.study.report_summary import summary_from_result
from khe_bayes.toolkit.report import Figure, Section, Table, Text

if TYPE_CHECKING:
    from khe_bayes.study.reanalysis import ReanalysisResult


def build_sections(
    result: ReanalysisResult, figures: list[Figure], ipd_figures: list[Figure], ppc_figure: Figure
) -> list[Section]:
    """All sections but the manifest, in reading order."""
    evidence, aggregate, diag = result.evidence, result.aggregate, result.diagnostics
    spec = aggregate.spec
    ev = evidence.to_frame()
    study = Section("Study and evidence").add(
        Text(
            f"Source: {evidence.source.citation} doi:{evidence.source.doi}. Only the abstract's "
            f"aggregate numbers are used. {evidence.source.rounding}"
        )
    )
    study.add(
        Table(
            ev[["id", "kind", "value", "population", "timepoint", "quote"]],
            caption="Every quantitative statement of the abstract, with its quote.",
        )
    )

    methods = Section("Aggregate model").add(
        Text(
            "Each outcome's probability is estimated independently from its count (Binomial "
            "likelihood) or, for a printed percentage, from the set of counts consistent with "
            "its rounding. Prior sets (the first is the default):\n"
            + "\n".join(f"- **{p.label}**: {p.describe()}" for p in spec.prior_sets())
        )
    )

    results = Section("Posterior summaries").add(
        Table(
            aggregate.summary.reset_index()[
                ["prior", "quantity", "mean", "sd", "hdi95_lb", "hdi95_ub", "ess_bulk", "r_hat"]
            ],
            caption="Posterior mean, SD and 95% HDI of each proportion "
            "(summary.csv has all columns).",
        )
    )
    results.add(
        Table(
            aggregate.side_by_side,
            caption="Reported (frequentist) and Bayesian estimates side by side (default prior).",
        )
    )
    results.add(
        Table(
            aggregate.thresholds[["prior", "statement", "probability", "mcse", "label"]],
            caption="Posterior probabilities of clinically meaningful thresholds.",
        )
    )
    results.add(
        Table(
            aggregate.zero_events,
            caption="Zero-event outcomes: Bayesian upper bound beside the rule of three and the "
            "exact (Clopper-Pearson) one-sided bound.",
            digits=4,
        )
    )
    for f in figures:
        results.add(f)

    checks = Section("Checks against exact posteriors").add(
        Text(
            "Under Beta priors the exact posterior is Beta (a mixture of Betas for rounded "
            "percentages with several consistent counts); under other priors the reference is "
            "quadrature on a fine grid. z is the MCMC error in units of its Monte Carlo "
            "standard error; |z| > 4 would signal a problem."
        )
    )
    checks.add(Table(aggregate.closed_form, caption="MCMC vs reference posterior.", digits=4))

    conv = Section("Convergence diagnostics")
    bad = diag[~diag["ok"]]
    if bad.empty:
        conv.add(
            Text(
                "All fits pass: R-hat <= 1.01, bulk and tail ESS >= 100 per chain, and no "
                "divergent transitions."
            )
        )
    else:
        models = ", ".join(dict.fromkeys(bad["model"]))
        conv.add(
            Text(
                f"**WARNING: poor convergence in {len(bad)} of {len(diag)} fits ({models}). "
                "Treat those results with caution; rerun with more draws and tuning steps.** "
                "The rows with ok = no below name each problem."
            )
        )
    conv.add(Table(diag, caption="Whole-model diagnostics per fit."))
    flagged = aggregate.summary[aggregate.summary["flag"] != ""]
    if not flagged.empty:
        conv.add(
            Table(flagged.reset_index()[["prior", "quantity", "flag"]], caption="Flagged rows.")
        )
    return [
        summary_from_result(result),
        study,
        *summary_data_sections(result),
        audit_section(result),
        methods,
        results,
        checks,
        assumptions_section(result),
        ipd_section(result, [f for f in ipd_figures if not _center_figure_set(result, f)]),
        set_by_assumptions_section(
            result, [f for f in ipd_figures if _center_figure_set(result, f)]
        ),
        sensitivity_section(result),
        ppc_section(result, ppc_figure),
        conv,
    ]


def audit_section(result: ReanalysisResult) -> Section:
    table = result.audit
    flagged = table[table["status"] != "ok"]
    section = Section("Consistency audit of the reported numbers").add(
        Text(
            "Each reported statistic is checked under each candidate interpretation: percentages "
            "against integer counts, GRIM-style integer-score searches, CI midpoint and width "
            "against the printed p-value, the text around the numbers, and joint feasibility "
            "by reconstruction. Flagged:\n"
            + "\n".join(
                f"- **{r.status}**: {r.statistic} read as {r.interpretation}: {r.detail}"
                for r in flagged.itertuples()
            )
        )
    )
    section.add(
        Table(
            table[
                [
                    c
                    for c in [
                        "statistic",
                        "interpretation",
                        "check",
                        "status",
                        "used_by_reconstruction",
                        "posterior_weight",
                    ]
                    if c in table
                ]
            ],
            caption="All checks (audit.csv has the details). used_by_reconstruction marks the "
            "interpretation the pseudo-patient reconstruction reproduces.",
        )
    )
    return section


PPC_COLUMNS = [
    "statistic",
    "interpretation",
    "verdict",
    "note",
    "evidence",
    "reported_estimate",
    "reported_lower",
    "reported_upper",
    "reported_p",
    "rep_estimate_q2.5",
    "rep_estimate_q97.5",
    "share_p_bound_met",
    "p_bound",
    "test",
]


def ppc_section(result: ReanalysisResult, figure: Figure) -> Section:
    fidelity = result.ipd.source == "reconstruction"
    title = (
        "Posterior-predictive checks of the percentages; reconstruction-fidelity check of the "
        "intervals"
        if fidelity
        else "Posterior-predictive checks against the reported statistics"
    )
    section = Section(title).add(
        Text(
            "For each reported statistic, replicated datasets are drawn from the posterior "
            "predictive distribution and the paper's procedure is re-run on each. Verdict rule: "
            + VerdictRule().describe()
            + ". Statistics that no fitted model replicates yet are listed as 'no replicator'."
            + (
                " The intervals and p-values here are replicated from the IPD models fitted to "
                "pseudo-patients that were built to reproduce the default readings, so the rows "
                "marked 'reconstruction-fidelity check' only say whether the reconstruction "
                "reproduces those readings; they are not a check of any model against the "
                "published numbers and cannot tell readings apart (the model checks of the "
                "intervals are in 'Predictive checks of the summary-data model')."
                if fidelity
                else ""
            )
        )
    )
    cols = ["check", *PPC_COLUMNS] if "check" in result.ppc else PPC_COLUMNS
    columns = [c for c in cols if c in result.ppc]
    section.add(Table(result.ppc[columns], caption="ppc_reported.csv (abridged)."))
    section.add(figure)
    return section


def manifest_section(manifest: dict) -> Section:
    versions = ", ".join(f"{k} {v}" for k, v in manifest["versions"].items())
    git = manifest["git"]
    commit = git["commit"] or "not a git checkout"
    dirty = " (with uncommitted changes)" if git.get("dirty") else ""
    sampler = manifest["settings"]["sampler"]
    section = Section("Manifest").add(
        Text(
            f"- Versions: {versions}\n"
            f"- Commit: {commit}{dirty}\n"
            f"- Requested: {sampler['chains']} chains x {sampler['draws']} draws after "
            f"{sampler['tune']} tuning steps, seed {sampler['seed']} (each fit's seed is "
            "derived from it); the settings each model actually used are below\n"
            f"- Elapsed: {manifest['elapsed_seconds']} s\n"
            "- Full details, including input hashes: manifest.json"
        )
    )
    models = manifest["settings"].get("models")
    if models:
        table = pd.DataFrame([{"model": name, **used} for name, used in models.items()])
        section.add(
            Table(
                table,
                caption="Sampler settings each model was fitted with (draws and chains per fit; "
                "fits: one per dataset, prior or refit).",
            )
        )
    return section


IPD_HEADLINE = HEADLINE  # the headline quantities (ipd_analysis.HEADLINE)


def ipd_section(result: ReanalysisResult, figures: list[Figure]) -> Section:
    ipd = result.ipd
    if ipd.source == "reconstruction":
        source = (
            f"{len(ipd.datasets)} pseudo-patient datasets reconstructed from the published "
            "numbers (each reproduces every reported statistic under the interpretations marked "
            "in the audit); each model is fitted to every dataset and the draws are pooled, so "
            "the posterior carries the reconstruction's uncertainty."
        )
    else:
        source = f"individual-patient data from {ipd.source} ({len(ipd.datasets[0])} patients)."
    section = Section("Hierarchical models on patient data").add(
        Text(
            "Models with a non-centered random effect of center: response at 6 and 12 months "
            "(logistic, KMP covariate), severity score over visits (ordinal cumulative-logit and "
            "Gaussian, patient and center effects), tumour shrinkage in KMP patients "
            "(combination vs sirolimus alone, adjusted for baseline severity; combination went "
            "to the most severe patients, so this is an adjusted association, not a randomized "
            "effect), and KMP vs non-KMP contrasts. Data: " + source
        )
    )
    summary = ipd.summary.reset_index()
    headline = summary[
        summary["quantity"].isin(IPD_HEADLINE) & (summary["identification"] != id_.SET)
    ]
    section.add(Text(f"Identification rule: {id_.RULE}"))
    ident = ipd.identification
    section.add(
        Table(
            ident[ident["quantity"].isin(IPD_HEADLINE)],
            caption="Identification of each headline estimand (identification.csv has all): "
            "prior and posterior SD, contraction, reconstruction share, the SD of the estimate "
            "across datasets (each with its own draw of the assumptions) and the label.",
        )
    )
    section.add(
        Table(
            headline[
                [
                    "model",
                    "quantity",
                    "identification",
                    "description",
                    "mean",
                    "sd",
                    "hdi95_lb",
                    "hdi95_ub",
                    "mcse_mean",
                    "mc_error_ratio",
                    "ess_bulk",
                    "r_hat",
                    "flag",
                ]
            ],
            caption="Headline posterior summaries: estimands the published numbers determine at "
            "least partly (those set by assumptions are in their own section below; "
            "ipd_summary.csv has every quantity). Pooled over datasets by Rubin's rules: sd is "
            "sqrt(W + (1 + 1/M) B); mcse_mean is the pooled mean's Monte Carlo SE sqrt(B / M), "
            "which includes the error from having only M datasets; mc_error_ratio = mcse_mean / "
            "sd (target < 0.1). r_hat is the worst and ess_bulk the smallest per-dataset value.",
        )
    )
    if len(ipd.datasets) > 1:
        share = ipd.variance_share
        share = share[share["quantity"].isin(IPD_HEADLINE)]
        section.add(
            Table(
                share,
                caption="Rubin's rules per quantity: within-dataset variance W, between-dataset "
                "variance B (ddof = 1), total T = W + (1 + 1/M) B, the reconstruction's share "
                "(1 + 1/M) B / T, the pooled mean's Monte Carlo SE sqrt(B / M), its ratio to "
                "sqrt(T), and the datasets needed for that ratio to be < 0.1.",
            )
        )
        growth = result.dataset_growth
        if growth:
            section.add(Text(_growth_text(growth)))
    if ipd.loo is not None:
        section.add(
            Table(
                ipd.loo.drop(columns=["note"]),
                caption="Severity models compared by PSIS-LOO, leaving one patient out "
                "(model_comparison.csv): higher elpd_loo predicts a new patient's scores better; "
                "elpd_diff and dse are the difference to the best model and its SE; Pareto k "
                "above 0.7 marks patients for whom the estimate is unreliable. The Gaussian "
                "model's densities are compared with the ordinal model's probabilities of the "
                "integer scores (a density approximates the probability of the unit bin).",
            )
        )
    section.add(
        Table(
            result.side_by_side_ipd,
            caption="Reported intervals (default interpretation) beside the pooled posterior: "
            "mean, 95% HDI, P(> 0) and P(> a clinically meaningful threshold).",
        )
    )
    for f in figures:
        section.add(f)
    return section


def _center_figure_set(result: ReanalysisResult, figure: Figure) -> bool:
    """The center forest plot shows ``center_response_rate``: it moves to the set-by-assumptions
    section when the response model's ``center_sd`` is labelled so."""
    if not figure.path.name.startswith("center_forest"):
        return False
    labels = id_.variable_labels(result.ipd.identification)
    return labels.get(("response", "center_sd")) == id_.SET


def _growth_text(growth: dict) -> str:
    if growth["final"] < 2:
        return (
            "One reconstructed dataset: the between-dataset variance, and so the Monte Carlo "
            "error of having only M datasets, cannot be estimated (no Rubin pooling). Use "
            "--datasets 2 or more (default 4)."
        )
    text = (
        f"Number of datasets: started with {growth['initial']}, ended with {growth['final']} "
        f"(cap {growth['max']}). The largest number needed for the pooled mean's Monte Carlo SE "
        f"to be below 10% of the posterior SD for every headline quantity is "
        f"{growth['needed']}"
    )
    if growth["needed"] > growth["final"]:
        return (
            text
            + (
                f", more than were fitted: the criterion is NOT met for some headline quantities "
                f"(see mc_error_ratio); rerun with --max-datasets {growth['needed']} (about "
                f"{growth['seconds_per_dataset']:.0f} s per dataset on this machine)."
            )
            + _all_text(growth)
        )
    return text + ": met." + _all_text(growth)


def _all_text(growth: dict) -> str:
    return (
        f" For every quantity not set by assumptions (ipd_summary.csv), "
        f"{growth['needed_all_not_set']} datasets would be needed (--max-datasets); see "
        "mc_error_ratio."
    )


def assumptions_section(result: ReanalysisResult) -> Section:
    section = Section("Assumptions of the reconstruction")
    if result.assumptions is None:
        return section.add(Text("None: the patient-level models use the user's own data (--ipd)."))
    section.add(
        Text(
            "The abstract reports aggregate numbers only. Every quantity it does not give and the "
            "pseudo-patient reconstruction needs is a generator parameter with a stated prior, "
            "drawn afresh for every dataset (a draw that cannot reproduce a published bound is "
            "rejected). Change them with --assume NAME=VALUE, --assume 'NAME=Dist(k=v, ...)' or "
            "--assumptions FILE.toml. Their effect on each estimand is measured below "
            "(reconstruction share, identification labels)."
        )
    )
    section.add(Table(result.assumptions, caption="Assumptions: generator parameters and priors."))
    if result.assumption_draws is not None and len(result.assumption_draws) > 1:
        draws = result.assumption_draws.describe().T[["mean", "std", "min", "max"]]
        section.add(
            Table(
                draws.reset_index(names="assumption"),
                caption="Values drawn over the reconstructed datasets (after rejection).",
            )
        )
    return section


def set_by_assumptions_section(result: ReanalysisResult, figures: list[Figure]) -> Section:
    ipd = result.ipd
    ident = ipd.identification
    section = Section("Estimands set by assumptions, not by the published numbers")
    rows = ident[ident["label"] == id_.SET]
    if rows.empty:
        return section.add(Text("None under the rule stated above."))
    section.add(
        Text(
            "These quantities are reported for completeness only. Under the rule above either "
            "the posterior barely moved from the prior (low contraction: the data carry almost "
            "no information on them, e.g. a between-center SD with the centers' outcomes "
            "unreported) or most of their posterior variance is the spread across "
            "reconstructions, i.e. across the assumptions' priors (e.g. which patients did not "
            "respond sets kmp_effect; the unreported baseline score sets the severity change's "
            "precision; how shrinkage values were split by arm sets the combination effect). "
            "Their values reflect the priors and the assumptions table, not the study."
        )
    )
    summary = ipd.summary.reset_index()
    keys = set(zip(rows["model"], rows["quantity"], strict=True))
    keep = [(m, q) in keys for m, q in zip(summary["model"], summary["quantity"], strict=True)]
    table = summary[keep].merge(
        rows[["model", "quantity", "prior_sd", "contraction", "reconstruction_share"]],
        on=["model", "quantity"],
    )
    section.add(
        Table(
            table[
                [
                    "model",
                    "quantity",
                    "description",
                    "mean",
                    "sd",
                    "prior_sd",
                    "contraction",
                    "reconstruction_share",
                ]
            ],
            caption="Estimands set by assumptions: posterior vs prior SD, contraction and the "
            "reconstruction's share of the variance.",
        )
    )
    for f in figures:
        section.add(f)
    return section


def sensitivity_section(result: ReanalysisResult) -> Section:
    section = Section("Prior sensitivity and leave-one-center-out")
    if result.prior_grid is None:
        return section.add(Text("Skipped (--no-sensitivity)."))
    section.add(
        Text(
            "Each headline effect refitted under sceptical, neutral and enthusiastic priors "
            "for the effect crossed with a weak and a strong prior on the between-center SD; "
            "then with each center left out in turn. These refits use one dataset (the first "
            "reconstruction, or your IPD), not the pooled datasets of the headline tables, so "
            "compare each row with its own reference on the same data: the neutral-prior row "
            "of the grid, and full_mean (all centers, same dataset) for leave-one-center-out. "
            "A difference between that reference and the pooled headline is the "
            "reconstruction's spread between datasets, not a prior or center effect."
        )
    )
    cols = [
        "model",
        "quantity",
        "effect_prior",
        "center_sd_prior",
        "mean",
        "hdi95_lb",
        "hdi95_ub",
        "p_gt_0",
        "threshold",
        "p_gt_threshold",
        "divergences",
    ]
    section.add(Table(result.prior_grid[cols], caption="Prior grid."))
    loco = result.loco
    cols = [
        c
        for c in [
            "model",
            "quantity",
            "left_out",
            "n_left_out",
            "full_mean",
            "mean",
            "shift",
            "shift_in_full_sd",
            "note",
        ]
        if c in loco
    ]
    section.add(
        Table(
            loco[cols],
            caption="Leave-one-center-out: posterior mean without each center beside the "
            "all-centers mean on the same dataset (full_mean), and the shift between them (also "
            "in full-data SDs).",
        )
    )
    return section


HEADLINE_SD = [
    "age_difference_months",
    "decrease[6m]",
    "decrease[12m]",
    "mean_score[6m]",
    "mean_score[12m]",
    "kmp_minus_non_kmp",
    "combination_minus_sirolimus",
    "mean_shrinkage_kmp",
    "mean_shrinkage[non_kmp]",
]


def summary_data_sections(result: ReanalysisResult) -> list[Section]:
    """The primary analysis of the reported comparisons: the summary-data model (its headline
    table, the readings' posterior weights, the design-effect sensitivity, its predictive
    checks and diagnostics)."""
    from khe_bayes.study.summary_data_checks import RULE

    sd = result.summary_data
    if sd is None:
        return []
    head = Section("Headline: the reported comparisons, from the published numbers")
    head.add(
        Text(
            "Primary analysis. Each printed 95% CI and p bound enters a likelihood directly "
            "(summary-data model, khe_bayes/study/summary_data.py): under a reading, the "
            "interval's "
            "centre and width are the sample mean (or difference) and its standard error; the "
            "unrounded ends are latent within their rounding cells (interval-censoring); a "
            "printed p bound constrains the test statistic. Parameters are population means "
            "and SDs. Clustering by center, which the paper's intervals ignore, enters as a "
            f"design effect 1 + (m - 1) ICC with K = {sd.options.design.centers} centers of "
            f"unequal size (effective cluster size n/K x {1 + sd.options.design.cv2:.2f}). "
            "Each ambiguous statement's readings (evidence.toml, with prior weights) are a "
            "latent discrete choice, marginalised exactly: a reading's posterior weight is "
            "its prior weight times its marginal likelihood (importance sampling), "
            "normalised. Priors: " + sd.priors.describe() + ". The table is the "
            "reading-averaged posterior; 'most_probable_reading' and 'its_weight' name the "
            "reading that carries most weight (summary.csv has every row; "
            "summary_data_by_reading.csv gives each reading's own posterior)."
        )
    )
    table = sd.summary[sd.summary["quantity"].isin(HEADLINE_SD)]
    head.add(
        Table(
            table[
                [
                    "quantity",
                    "description",
                    "mean",
                    "sd",
                    "eti_2.5%",
                    "eti_97.5%",
                    "p_gt_0",
                    "most_probable_reading",
                    "its_weight",
                ]
            ],
            caption="Reading-averaged posterior (mean, SD, 95% equal-tailed interval, "
            "P(> 0)) of the reported comparisons.",
        )
    )
    weights = Section("Readings of the ambiguous statements: posterior weights")
    weights.add(
        Text(
            "Prior weight (evidence.toml) and posterior weight of each reading of the four "
            "reported comparisons (age by KMP status; severity at 6 and 12 months; shrinkage "
            "by KMP status; shrinkage by arm within KMP). A reading whose own test contradicts "
            "its printed p bound has likelihood 0 (excluded, with the reason). The 'two group "
            "means' readings take the printed pair as the two groups' means, in the order "
            "given by the wording (evidence.toml: order_reason). Readings that share "
            "parameters are weighed jointly (shrinkage: the KMP mean appears in both "
            "statements), so their weights interact."
        )
    )
    weights.add(
        Table(
            sd.weights[
                ["statistic", "reading", "prior_weight", "posterior_weight", "mcse", "excluded"]
            ],
            caption="Each reading's posterior probability (mcse: Monte Carlo SE propagated from "
            "the importance-sampling estimates of the marginal likelihoods).",
            digits=4,
        )
    )
    sens = Section("Design effect: sensitivity to the between-center ICC")
    sens.add(
        Text(
            "The abstract does not inform the ICC of center: its posterior is its prior (table "
            "below). How much the conclusions depend on it: the model refitted (importance "
            "sampling) at fixed ICC values; the design effect shown is for all 52 patients."
        )
    )
    sens.add(Table(sd.icc_prior_posterior, caption="ICC: prior vs posterior, by block."))
    rows = sd.icc_sensitivity
    est = rows[(rows["row"] == "estimand") & rows["quantity"].isin(HEADLINE_SD)]
    sens.add(
        Table(
            est[
                ["icc", "design_effect_n52", "quantity", "mean", "eti_2.5%", "eti_97.5%", "p_gt_0"]
            ],
            caption="Reading-averaged posterior of each comparison at fixed ICC.",
        )
    )
    rw = rows[rows["row"] == "reading weight"]
    wide = rw.pivot_table(index="quantity", columns="icc", values="mean").reset_index()
    wide.columns = [str(c) if c == "quantity" else f"weight at ICC {c:g}" for c in wide.columns]
    sens.add(Table(wide, caption="Reading weights at fixed ICC.", digits=4))
    checks = Section("Predictive checks of the summary-data model")
    checks.add(
        Text(
            "Replications of the printed numbers from the summary-data model's posterior "
            "predictive distribution (summary_data_checks.py): sample means and SDs are "
            "replicated, the paper's procedure under the reading is re-run, and the replicated "
            "printed ends are compared with the printed ones. Verdict rule: two-sided mid-p "
            "posterior predictive p-value of each printed end (replications rounded as "
            f"printed); the smaller of the two is >= {RULE.consistent_at} consistent, "
            f"< {RULE.inconsistent_below} inconsistent, tension in between. The share of "
            "replications meeting the printed p bound is reported under that name (it is a "
            "predictive probability of the printed event, not a p-value); below 5% it makes "
            "the verdict tension, below 0.5% inconsistent. 'model-averaged' replicates from "
            "every reading by its weight; "
            "'given reading' conditions on one (a reading excluded by its own test is fitted "
            "without the p bounds, so its check can show the contradiction)."
        )
    )
    checks.add(
        Table(
            sd.checks[
                [
                    "statistic",
                    "check",
                    "reading",
                    "posterior_weight",
                    "reported_lower",
                    "reported_upper",
                    "reported_p",
                    "ppp_lower",
                    "ppp_upper",
                    "share_p_bound_met",
                    "p_bound",
                    "verdict",
                ]
            ],
            caption="summary_data_checks.csv (abridged; joint readings in the csv).",
            digits=3,
        )
    )
    diag = sd.diagnostics
    bad = diag[(diag["r_hat_max"] > 1.01) | (diag["divergences"] > 0)]
    checks.add(
        Text(
            "Diagnostics of the summary-data fits: "
            + (
                "all fits have R-hat <= 1.01 and no divergences."
                if bad.empty
                else f"**{len(bad)} fit(s) with R-hat > 1.01 or divergences; see the table.**"
            )
        )
    )
    checks.add(Table(diag, caption="summary_data_diagnostics.csv."))
    return [head, weights, sens, checks]
