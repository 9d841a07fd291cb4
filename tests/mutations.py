"""Mutation check: each plausible bug below must make the named fast-tier tests fail.

    .venv/bin/python tests/mutations.py                 # every mutation
    .venv/bin/python tests/mutations.py verdict_flip    # some, by name
    .venv/bin/python tests/mutations.py --list

Each mutation is applied to a fresh copy of the tree in a temporary directory (never to the
checkout: nothing here edits a tracked file), and the named tests are run there with
``PYTHONPATH`` pointing at the copy, so ``khe_bayes`` is imported from the mutated copy, not the
editable install. A mutation is *caught* when pytest exits non-zero with at least one failed
test (not an import or collection error). The table in tests/README.md is this script's output.
Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
IGNORE = shutil.ignore_patterns(
    ".venv", ".git", "results", "__pycache__", ".pytest_cache", "*.egg-info"
)


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "prior_grid_ignores_effect_prior",
        "prior grid: the effect prior of a cell is ignored (the default prior is used)",
        "khe_bayes/study/sensitivity.py",
        'update={t.effect_field: effect_prior, "center_sd": sd_prior}',
        'update={"center_sd": sd_prior}',
        (
            "tests/test_sensitivity.py::test_prior_grid_matches_precision_weighting_of_the_neutral_fit",
        ),
    ),
    Mutation(
        "aggregate_ignores_rate_prior",
        "aggregate model: the Beta prior of a prior set is ignored (always Beta(1, 1))",
        "khe_bayes/study/aggregate.py",
        'rate = priors.rate.create("rate", dims="outcome")',
        'rate = pm.Beta("rate", 1.0, 1.0, dims="outcome")',
        (
            "tests/test_aggregate.py::test_mcmc_agrees_with_exact_posterior_within_monte_carlo_error",
        ),
    ),
    Mutation(
        "rubin_drops_one_plus_one_over_m",
        "pooling: total variance W + B instead of W + (1 + 1/M) B",
        "khe_bayes/toolkit/pooling.py",
        "    total = within + (1 + 1 / m) * between\n",
        "    total = within + between\n",
        ("tests/test_pooled_summary.py",),
    ),
    Mutation(
        "rubin_between_ddof0",
        "pooling: between-dataset variance with ddof = 0",
        "khe_bayes/toolkit/pooling.py",
        "    between = float(means.var(ddof=1))\n",
        "    between = float(means.var())\n",
        ("tests/test_pooled_summary.py",),
    ),
    Mutation(
        "contrast_groups_swapped",
        "age difference computed KMP minus non-KMP (groups swapped in the contrast)",
        "khe_bayes/study/statistics.py",
        '_pooled_t"): lambda cols: t_two_sample_pooled(\n'
        '        _col(cols, "age_months", ~_kmp(cols)), _col(cols, "age_months", _kmp(cols))',
        '_pooled_t"): lambda cols: t_two_sample_pooled(\n'
        '        _col(cols, "age_months", _kmp(cols)), _col(cols, "age_months", ~_kmp(cols))',
        ("tests/test_statistics_mapping.py",),
    ),
    Mutation(
        "combination_contrast_wrong_group",
        "combination vs alone compares combination with all non-combination patients "
        "(non-KMP included)",
        "khe_bayes/study/statistics.py",
        'return (cols.arm == "sirolimus") & _kmp(cols)',
        'return cols.arm == "sirolimus"',
        ("tests/test_statistics_mapping.py",),
    ),
    Mutation(
        "p_value_from_wrong_test",
        "mean score at a visit printed with its one-sample p instead of the paired test's",
        "khe_bayes/study/statistics.py",
        'return _with_p(t_one_sample(_col(cols, f"severity_{visit}")), t_paired(before, after).p)',
        'return t_one_sample(_col(cols, f"severity_{visit}"))',
        ("tests/test_statistics_mapping.py",),
    ),
    Mutation(
        "loco_mislabels_center",
        "leave-one-center-out: the refit leaves out the next center, the row names another",
        "khe_bayes/study/sensitivity.py",
        '    in_center = (data["center"].astype(str) == center).to_numpy()\n',
        '    others = sorted(data["center"].astype(str).unique())\n'
        "    nxt = None if center is None else (others.index(center) + 1) % len(others)\n"
        "    dropped = None if nxt is None else others[nxt]\n"
        '    in_center = (data["center"].astype(str) == dropped).to_numpy()\n',
        (
            "tests/test_sensitivity.py::test_leave_one_center_out_refits_without_the_center_it_names",
        ),
    ),
    Mutation(
        "loco_refits_fail",
        "leave-one-center-out: every refit fails and is recorded as a note",
        "khe_bayes/study/sensitivity.py",
        "model = _refit_model(t, data, t.default_priors, keep=~in_center)",
        "model = _refit_model(t, data, t.default_priors, keep=in_center & False)",
        (
            "tests/test_sensitivity.py::test_leave_one_center_out_refits_without_the_center_it_names",
        ),
    ),
    Mutation(
        "verdict_threshold_flipped",
        "verdict rule: consistent and inconsistent thresholds swapped",
        "khe_bayes/study/ppc.py",
        "    consistent_at: float = 0.05\n    inconsistent_below: float = 0.005\n",
        "    consistent_at: float = 0.005\n    inconsistent_below: float = 0.05\n",
        ("tests/test_ppc.py",),
    ),
    Mutation(
        "verdict_comparison_flipped",
        "verdict rule: consistent when the evidence is below the threshold",
        "khe_bayes/study/ppc.py",
        "        if evidence >= self.consistent_at:",
        "        if evidence < self.consistent_at:",
        ("tests/test_ppc.py",),
    ),
    Mutation(
        "pooled_rhat_best_not_worst",
        "pooled summary: best per-dataset R-hat reported instead of the worst",
        "khe_bayes/toolkit/pooling.py",
        'stats["r_hat"] = pd.concat([p["r_hat"] for p in per], axis=1).max(axis=1)',
        'stats["r_hat"] = pd.concat([p["r_hat"] for p in per], axis=1).min(axis=1)',
        ("tests/test_pooled_summary.py",),
    ),
    Mutation(
        "pooled_ess_flag_on_best_dataset",
        "pooled summary: low ESS flagged only if every dataset is low",
        "khe_bayes/toolkit/pooling.py",
        'stats["ess_bulk"] = pd.concat([p["ess_bulk"] for p in per], axis=1).min(axis=1)',
        'stats["ess_bulk"] = pd.concat([p["ess_bulk"] for p in per], axis=1).max(axis=1)',
        ("tests/test_pooled_summary.py",),
    ),
    Mutation(
        "replicate_visits_swapped",
        "replicate_ipd: 6- and 12-month replicated responses written to each other's column",
        "khe_bayes/study/ipd_analysis.py",
        'for v, visit in enumerate(("6m", "12m")):',
        'for v, visit in enumerate(("12m", "6m")):',
        ("tests/test_replicate_ipd.py",),
    ),
    Mutation(
        "replicate_wrong_dataset",
        "replicate_ipd: every dataset replicated from the first dataset's draws",
        "khe_bayes/study/ipd_analysis.py",
        '"age": _draws_of(fits["kmp_contrasts"], "age", m),',
        '"age": _draws_of(fits["kmp_contrasts"], "age", 0),',
        ("tests/test_replicate_ipd.py",),
    ),
    Mutation(
        "verify_always_reproduces",
        "verify: an interval is accepted whatever it prints as",
        "khe_bayes/study/reconstruct.py",
        '"reproduces_ci": interval_prints_as(result, ci),',
        '"reproduces_ci": True,',
        ("tests/test_statistics_mapping.py",),
    ),
    Mutation(
        "verify_loose_rounding",
        "verify: rounding tolerance 0.05 instead of floating point (1e-9)",
        "khe_bayes/study/reconstruct.py",
        "    hi = rounding_interval(ci.upper, ci.decimals)\n    tol = 1e-9\n",
        "    hi = rounding_interval(ci.upper, ci.decimals)\n    tol = 0.05\n",
        ("tests/test_statistics_mapping.py",),
    ),
    Mutation(
        "threshold_mcse_ignores_autocorrelation",
        "threshold probabilities: MCSE from the number of draws, not the ESS",
        "khe_bayes/toolkit/summary.py",
        'ess = float(az.ess(hits.reshape(n_chain, -1).astype(float), method="bulk"))',
        "ess = float(hits.size)",
        ("tests/test_summary.py",),
    ),
    Mutation(
        "threshold_direction_flipped",
        "threshold probabilities: P(x < v) reported for P(x > v)",
        "khe_bayes/toolkit/summary.py",
        'hits = draws > t.value if t.direction == ">" else draws < t.value',
        'hits = draws < t.value if t.direction == ">" else draws > t.value',
        ("tests/test_summary.py",),
    ),
    Mutation(
        "hdi_is_equal_tailed",
        "posterior summary: the 95% HDI columns hold the equal-tailed interval",
        "khe_bayes/toolkit/summary.py",
        'table = hdi[["mean", "sd", LOWER, UPPER]].join(eti[["median", "eti95_lb", "eti95_ub"]])',
        'table = hdi[["mean", "sd"]].join(eti[["median", "eti95_lb", "eti95_ub"]])\n'
        '    table[LOWER], table[UPPER] = table["eti95_lb"], table["eti95_ub"]',
        ("tests/test_summary.py",),
    ),
    Mutation(
        "side_by_side_unscaled",
        "side-by-side: the percentage scale not applied to the posterior draws",
        "khe_bayes/toolkit/side_by_side.py",
        "draws = select_draws(idata, p.quantity) * p.scale",
        "draws = select_draws(idata, p.quantity)",
        ("tests/test_side_by_side.py",),
    ),
    Mutation(
        "quick_warmup_kept_when_failing",
        "quick warm-up: a quick fit that fails the convergence rules is kept (no refit)",
        "khe_bayes/toolkit/pooling.py",
        'if check["ok"]:',
        "if True:",
        (
            "tests/test_pooling.py::test_quick_warmup_is_kept_only_when_it_passes_the_convergence_rules",
        ),
    ),
    Mutation(
        "loco_weight_ignored",
        "leave-one-center-out by weight: the left-out patients still count in the likelihood",
        "khe_bayes/study/hierarchical/common.py",
        'pm.Potential(f"{name}_loglik", (weight * pm.logp(cls.dist(**params), observed)).sum())',
        'pm.Potential(f"{name}_loglik", pm.logp(cls.dist(**params), observed).sum())',
        ("tests/test_sensitivity.py::test_leaving_a_center_out_by_weight_is_dropping_its_rows",),
    ),
    Mutation(
        "initial_point_from_first_compiled",
        "compiled sampler: the swapped-in data are not set on the compiled-from model, so chains "
        "start where the first compiled prior put them",
        "khe_bayes/toolkit/compiled.py",
        "np.asarray(data.get(name, values), dtype=self._dtypes[name])",
        "np.asarray(values, dtype=self._dtypes[name])",
        (
            "tests/test_compiled.py::test_priors_swapped_in_as_data_give_the_draws_of_a_fresh_compile",
        ),
    ),
    Mutation(
        "predictive_labels_shifted",
        "thinned posterior predictive: replications labelled with the next kept draw",
        "khe_bayes/toolkit/sampling.py",
        "        posterior = posterior.isel(draw=keep)\n",
        "        posterior = posterior.isel(draw=keep)\n"
        '        posterior = posterior.assign_coords(draw=np.roll(posterior["draw"].values, 1))\n',
        (
            "tests/test_pooling.py::test_thinned_predictive_replicates_the_posterior_draw_with_its_label",
        ),
    ),
    Mutation(
        "ess_not_monotone",
        "vectorized ESS: Geyer's initial monotone sequence left out",
        "khe_bayes/toolkit/convergence.py",
        "monotone = np.minimum.accumulate(pairs[:c]).sum() if c else 0.0",
        "monotone = pairs[:c].sum() if c else 0.0",
        ("tests/test_convergence.py",),
    ),
    Mutation(
        "wilson_centre_wrong",
        "Wilson interval: z^2/n instead of z^2/(2n) in the centre",
        "khe_bayes/toolkit/freq.py",
        "centre = (p_hat + z**2 / (2 * n)) / (1 + z**2 / n)",
        "centre = (p_hat + z**2 / n) / (1 + z**2 / n)",
        ("tests/test_freq.py",),
    ),
    Mutation(
        "welch_df_pooled",
        "Welch t: pooled degrees of freedom instead of Satterthwaite",
        "khe_bayes/toolkit/freq.py",
        "df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))",
        "df = a.size + b.size - 2",
        ("tests/test_freq.py",),
    ),
    Mutation(
        "rule_of_three_off",
        "zero events: rule of three as 3/(n+1)",
        "khe_bayes/study/aggregate.py",
        "    return 3.0 / n\n",
        "    return 3.0 / (n + 1)\n",
        ("tests/test_aggregate.py::test_zero_event_bounds",),
    ),
    Mutation(
        "report_truncates_numbers",
        "report: numbers truncated instead of rounded when printed",
        "khe_bayes/toolkit/report.py",
        '    text = f"{value:.{decimals}f}"\n',
        '    text = f"{np.trunc(value * 10**decimals) / 10**decimals:.{decimals}f}"\n',
        ("tests/test_output_values.py::test_every_number_in_the_report_tables_is_the_csv_number",),
    ),
    Mutation(
        "report_thresholds_complement",
        "report: threshold table prints P(not statement)",
        "khe_bayes/study/report_sections.py",
        'aggregate.thresholds[["prior", "statement", "probability", "mcse", "label"]]',
        'aggregate.thresholds.assign(probability=lambda f: 1 - f["probability"])[\n'
        '                ["prior", "statement", "probability", "mcse", "label"]\n            ]',
        ("tests/test_output_values.py::test_every_number_in_the_report_tables_is_the_csv_number",),
    ),
    Mutation(
        "sbc_uniformity_no_bonferroni",
        "SBC: the family-wise alpha is not divided by the number of parameters",
        "khe_bayes/toolkit/sbc.py",
        '"threshold": alpha / n_params,\n                "uniform": bool(p >= alpha / n_params),',
        '"threshold": alpha,\n                "uniform": bool(p >= alpha),',
        ("tests/test_sbc.py::test_fast_sbc_power_is_as_stated",),
    ),
)


def run(m: Mutation, keep: bool = False) -> tuple[bool, str, float]:
    """Apply ``m`` to a copy of the tree and run its tests; (caught, last line, seconds)."""
    start = time.time()
    with tempfile.TemporaryDirectory(prefix=f"mut-{m.name}-") as tmp:
        root = Path(tmp) / "tree"
        shutil.copytree(REPO, root, ignore=IGNORE, symlinks=True)
        target = root / m.path
        text = target.read_text(encoding="utf-8")
        if text.count(m.old) != 1:
            return False, f"patch does not apply ({text.count(m.old)} matches)", 0.0
        target.write_text(text.replace(m.old, m.new), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run(
            [str(PYTHON), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        last = lines[-1] if lines else proc.stderr.strip().splitlines()[-1:]
        failed = " failed" in str(last)
        return proc.returncode == 1 and failed, str(last), time.time() - start


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for m in MUTATIONS:
            print(f"{m.name}: {m.bug}")
        return 0
    chosen = [m for m in MUTATIONS if not argv or m.name in argv]
    print("| mutation | bug | test that catches it | caught | seconds |")
    print("|---|---|---|---|---|")
    missed = 0
    for m in chosen:
        caught, last, seconds = run(m)
        missed += not caught
        tests = ", ".join(f"`{t.removeprefix('tests/')}`" for t in m.tests)
        print(
            f"| `{m.name}` | {m.bug} | {tests} | {'yes' if caught else 'NO: ' + last} "
            f"| {seconds:.0f} |",
            flush=True,
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
