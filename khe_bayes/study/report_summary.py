"""The report's first screen: the clinical answer in words, built from plain tables.

Everything here is a function of small tables, so any model can feed it:

- a **headline** table (:data:`HEADLINE_COLUMNS`, one row per quantity): ``quantity`` (the
  variable name, kept for the detail tables only), ``description`` (clinical words),
  ``estimate``, ``lower`` and ``upper`` (95% interval), ``unit`` (``"%"`` for a probability shown
  as a percentage, otherwise a unit word such as ``"points"``, or ``""``), ``threshold`` (e.g.
  ``"above 90%"``) and ``threshold_probability``; optional ``basis`` (the data and reading the
  number rests on) and ``determined_by`` (how far the published numbers determine it, e.g.
  "determined by the published numbers" / "partly" / "set by assumptions");
- a **safety** table (:data:`SAFETY_COLUMNS`) for outcomes with zero events: ``events``, ``n``,
  the 95% upper bound ``upper`` and the ``rule_of_three``, with the same optional columns;
- the **audit** table (``statistic``, ``interpretation``, ``status``, ``detail``) for the flags
  and for what the abstract leaves ambiguous.

Today the headline comes from the aggregate model (:func:`headline_from_aggregate`,
:func:`safety_from_zero_events`); a model whose rows carry ``determined_by`` shows it beside
each number, so a number set by a prior, a default reading or a reconstruction constant is never
shown as if the published data had determined it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from khe_bayes.toolkit.report import Section, Table, Text

HEADLINE_COLUMNS = (
    "quantity",
    "description",
    "estimate",
    "lower",
    "upper",
    "unit",
    "threshold",
    "threshold_probability",
)
SAFETY_COLUMNS = (
    "quantity",
    "description",
    "events",
    "n",
    "upper",
    "rule_of_three",
    "unit",
    "threshold",
    "threshold_probability",
)
OPTIONAL_COLUMNS = ("basis", "determined_by")
FLAG_ORDER = ("infeasible", "inconsistent", "tension")


def _check(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}")


def format_value(value: float, unit: str) -> str:
    """A point estimate or bound in clinical form: percentages as whole percent (one decimal
    below 10%), other quantities with 3 significant digits and their unit."""
    if value is None or not np.isfinite(value):
        return "not estimated"
    if unit == "%":
        pct = 100 * value
        return f"{pct:.1f}%" if abs(pct) < 10 else f"{pct:.0f}%"
    digits = max(0, 2 - int(np.floor(np.log10(abs(value))))) if value else 0
    text = f"{value:.{min(digits, 3)}f}"
    return f"{text} {unit}".strip()


def format_interval(lower: float, upper: float, unit: str) -> str:
    lo, hi = format_value(lower, unit), format_value(upper, unit)
    if unit == "%":
        return f"{lo.rstrip('%')}-{hi}"
    return f"{lo} to {hi}"


def format_probability(p: float) -> str:
    """Two decimals; the extremes as '> 0.99' and '< 0.01' (Monte Carlo error is larger)."""
    if p is None or not np.isfinite(p):
        return ""
    if p > 0.99:
        return "> 0.99"
    if p < 0.01:
        return "< 0.01"
    return f"{p:.2f}"


def _threshold_text(direction: str, value: float, unit: str) -> str:
    word = "above" if direction == ">" else "below"
    return f"{word} {format_value(value, unit)}"


def _split_description(text: str) -> tuple[str, str]:
    """The aggregate descriptions read '<clinical words>: probability; data 51/52'."""
    words, _, rest = text.partition(": probability")
    basis = rest.split("data ", 1)[1] if "data " in rest else ""
    return words.strip(), basis.strip()


def headline_from_aggregate(
    summary: pd.DataFrame,
    thresholds: pd.DataFrame,
    prior: str,
    outcomes: Iterable[str],
    readings: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Headline rows from the aggregate model's summary (posterior mean, 95% HDI) and threshold
    tables under one prior set; ``outcomes`` in display order; ``readings`` maps an outcome to
    the reading of the abstract its data rest on (shown in ``basis``)."""
    rows = []
    table = summary.reset_index()
    table = table[table["prior"] == prior].set_index("quantity")
    probs = thresholds[thresholds["prior"] == prior]
    for outcome in outcomes:
        quantity = f"rate[{outcome}]"
        if quantity not in table.index:
            continue
        row = table.loc[quantity]
        words, basis = _split_description(str(row["description"]))
        reading = (readings or {}).get(outcome)
        t = probs[probs["quantity"] == quantity].head(1)
        rows.append(
            {
                "quantity": quantity,
                "description": words,
                "estimate": float(row["mean"]),
                "lower": float(row["hdi95_lb"]),
                "upper": float(row["hdi95_ub"]),
                "unit": "%",
                "threshold": (
                    _threshold_text(t["direction"].iloc[0], float(t["value"].iloc[0]), "%")
                    if len(t)
                    else ""
                ),
                "threshold_probability": float(t["probability"].iloc[0]) if len(t) else np.nan,
                "basis": f"{basis} patients" + (f", read as {reading}" if reading else ""),
            }
        )
    return pd.DataFrame(rows, columns=[*HEADLINE_COLUMNS, "basis"])


def safety_from_zero_events(
    zero_events: pd.DataFrame,
    thresholds: pd.DataFrame,
    summary: pd.DataFrame,
    prior: str,
) -> pd.DataFrame:
    """Safety rows from the zero-event table (posterior 95% upper bound, rule of three) with
    the first 'below' threshold probability of each outcome, under one prior set."""
    rows = []
    upper_col = next(c for c in zero_events.columns if c.startswith("upper_credible"))
    described = summary.reset_index()
    described = described[described["prior"] == prior].set_index("quantity")["description"]
    probs = thresholds[thresholds["prior"] == prior]
    for _, z in zero_events[zero_events["prior"] == prior].iterrows():
        quantity = f"rate[{z['outcome']}]"
        words, _ = _split_description(str(described.get(quantity, z["outcome"])))
        t = probs[(probs["quantity"] == quantity) & (probs["direction"] == "<")].head(1)
        rows.append(
            {
                "quantity": quantity,
                "description": words,
                "events": int(z["events"]),
                "n": int(z["n"]),
                "upper": float(z[upper_col]),
                "rule_of_three": float(z["rule_of_three"]),
                "unit": "%",
                "threshold": (
                    _threshold_text("<", float(t["value"].iloc[0]), "%") if len(t) else ""
                ),
                "threshold_probability": float(t["probability"].iloc[0]) if len(t) else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=list(SAFETY_COLUMNS))


def _words(name: str) -> str:
    return str(name).replace("_", " ")


def audit_flags(audit: pd.DataFrame, limit: int = 3) -> list[str]:
    """The audit's main flags in words: each infeasible or inconsistent reading (at most
    ``limit``), then the tensions in one line."""
    _check(audit, ("statistic", "interpretation", "status", "detail"), "audit")
    serious = audit[audit["status"].isin(FLAG_ORDER[:2])].copy()
    serious["order"] = serious["status"].map(FLAG_ORDER.index)
    serious = serious.sort_values("order", kind="stable")
    lines = [
        f"**{r.status}**: {_words(r.statistic)}, read as {_words(r.interpretation)}: "
        f"{str(r.detail).splitlines()[0]}"
        for r in serious.head(limit).itertuples()
    ]
    if len(serious) > limit:
        lines.append(f"{len(serious) - limit} more infeasible or inconsistent readings")
    tension = audit[audit["status"] == "tension"]
    if len(tension):
        names = ", ".join(
            f"{_words(r.statistic)} ({_words(r.interpretation)})" for r in tension.itertuples()
        )
        lines.append(f"**tension** ({len(tension)}): {names}; details in the audit")
    return lines


def ambiguous_readings(audit: pd.DataFrame) -> list[str]:
    """One line naming the statistics the audit reads in more than one way that the published
    numbers allow (a reading flagged infeasible is not counted): the abstract does not say
    which is meant. Empty when there are none."""
    ok = audit[(audit["status"] != "infeasible") & (audit["statistic"] != "all")]
    ambiguous = [
        _words(statistic)
        for statistic, rows in ok.groupby("statistic", sort=False)
        if rows["interpretation"].nunique() > 1
    ]
    if not ambiguous:
        return []
    return [
        f"which reading is meant for {len(ambiguous)} statistics that the printed numbers allow "
        f"in more than one way ({', '.join(ambiguous)}); the audit lists the readings"
    ]


def _headline_rows(headline: pd.DataFrame) -> list[dict]:
    rows = []
    for r in headline.to_dict("records"):
        p = format_probability(r["threshold_probability"])
        rows.append(
            {
                "outcome": r["description"],
                "estimate (95% interval)": f"{format_value(r['estimate'], r['unit'])} "
                f"({format_interval(r['lower'], r['upper'], r['unit'])})",
                "what it means": f"probability {r['threshold']}: {p}" if r["threshold"] else "",
                "based on": r.get("basis") or "",
                "determined by": r.get("determined_by") or "",
            }
        )
    return rows


def _safety_rows(safety: pd.DataFrame) -> list[dict]:
    rows = []
    for r in safety.to_dict("records"):
        p = format_probability(r["threshold_probability"])
        rows.append(
            {
                "outcome": f"Safety: {r['description']}",
                "estimate (95% interval)": f"below {format_value(r['upper'], r['unit'])} "
                "(95% upper bound)",
                "what it means": f"probability {r['threshold']}: {p}" if r["threshold"] else "",
                "based on": f"{r['events']}/{r['n']} patients (rule of three: "
                f"{format_value(r['rule_of_three'], r['unit'])})",
                "determined by": r.get("determined_by") or "",
            }
        )
    return rows


def _results_table(headline: pd.DataFrame, safety: pd.DataFrame) -> Table:
    """Headline and safety rows in one table; the 'determined by' column appears when any
    row carries a label."""
    table = pd.DataFrame([*_headline_rows(headline), *_safety_rows(safety)])
    if not (table["determined by"] != "").any():
        table = table.drop(columns="determined by")
    if not (table["based on"] != "").any():
        table = table.drop(columns="based on")
    return Table(table)


def first_screen(
    headline: pd.DataFrame,
    safety: pd.DataFrame,
    flags: list[str],
    limits: list[str],
    *,
    intro: str = "",
    convergence: str = "",
    prior_note: str = "",
) -> Section:
    """The one-screen summary the report opens with: each headline quantity with its 95%
    interval and what it means, the safety bounds, the audit's main flags and what the
    abstract cannot tell. Variable names stay in the detail tables."""
    _check(headline, HEADLINE_COLUMNS, "headline")
    _check(safety, SAFETY_COLUMNS, "safety")
    section = Section("Summary", css_class="first-screen")
    if intro or prior_note or convergence:
        section.add(Text(" ".join(t for t in (intro, prior_note, convergence) if t)))
    section.add(_results_table(headline, safety))
    if flags:
        section.add(Text("**The audit's main flags**:\n" + _bullets(flags)))
    if limits:
        section.add(Text("**What the abstract cannot tell**:\n" + _bullets(limits)))
    return section


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


# --- fed from today's reanalysis result ----------------------------------------------------------

# the reported comparisons on the first screen, from the summary-data model: (quantity, words,
# unit). The threshold is 0 (a difference in the stated direction).
SUMMARY_DATA_HEADLINE = (
    ("age_difference_months", "Age at treatment, non-KMP minus KMP", "months"),
    ("decrease[6m]", "Severity score decrease from baseline, 6 months", "points"),
    ("decrease[12m]", "Severity score decrease from baseline, 12 months", "points"),
    ("combination_minus_sirolimus", "Tumour shrinkage, combination minus sirolimus alone", "pp"),
)


def headline_from_summary_data(summary: pd.DataFrame) -> pd.DataFrame:
    """Headline rows (:data:`HEADLINE_COLUMNS` plus ``basis``) for the reported comparisons, from
    the summary-data model's reading-averaged posterior (mean, 95% equal-tailed interval,
    P(> 0)). ``basis`` names the printed interval as the data and the reading that carries most
    posterior weight, so a reader sees that the number is averaged over readings."""
    by_quantity = summary.set_index("quantity")
    rows = []
    for quantity, words, unit in SUMMARY_DATA_HEADLINE:
        if quantity not in by_quantity.index:
            continue
        r = by_quantity.loc[quantity]
        reading = str(r.get("most_probable_reading", "")).split(";")[0].split("=")[-1]
        rows.append(
            {
                "quantity": quantity,
                "description": words,
                "estimate": float(r["mean"]),
                "lower": float(r["eti_2.5%"]),
                "upper": float(r["eti_97.5%"]),
                "unit": unit,
                "threshold": "above 0",
                "threshold_probability": float(r["p_gt_0"]),
                "basis": f"printed 95% CI and p bound; averaged over readings (most weight: "
                f"{_words(reading)}, {float(r['its_weight']):.0%})",
            }
        )
    return pd.DataFrame(rows, columns=[*HEADLINE_COLUMNS, "basis"])


HEADLINE_OUTCOMES = ("response_6m", "response_12m")

# True of the abstract whatever the run: it prints aggregates only (README: Centers).
FIXED_LIMITS = (
    "anything about individual patients: only aggregates are printed, so the patient-level "
    "models below use reconstructed pseudo-patients and rest on the reconstruction's assumptions",
    "how many centers treated patients, and how many each (not printed; the reconstruction "
    "assumes the hospitals of the author affiliations)",
    "whether sirolimus caused the responses: a single-arm retrospective cohort has no "
    "comparison group; combination therapy went to the most severe KMP patients, so "
    "combination vs sirolimus alone is an association, not a randomized effect",
)


def summary_from_result(result) -> Section:
    """The first screen of the reanalysis report, from its aggregate tables (default prior).

    ``result`` is a :class:`khe_bayes.study.reanalysis.ReanalysisResult`; only its plain tables are
    read."""
    aggregate = result.aggregate
    prior = aggregate.spec.priors.label
    readings = {
        o.name: _words(o.interpretation) for o in aggregate.spec.outcome if o.interpretation
    }
    headline = headline_from_aggregate(
        aggregate.summary, aggregate.thresholds, prior, HEADLINE_OUTCOMES, readings
    )
    if getattr(result, "summary_data", None) is not None:
        comparisons = headline_from_summary_data(result.summary_data.summary)
        headline = pd.concat([headline, comparisons], ignore_index=True)
    safety = safety_from_zero_events(
        aggregate.zero_events, aggregate.thresholds, aggregate.summary, prior
    )
    diag = result.diagnostics
    bad = diag[~diag["ok"]]
    if bad.empty:
        convergence = "Every fit passed the convergence checks."
    else:
        convergence = (
            f"**WARNING: {len(bad)} of {len(diag)} fits did not pass the convergence checks "
            "(see Convergence diagnostics); read their numbers with caution.**"
        )
    source = result.evidence.source
    intro = (
        f"From the numbers printed in the abstract only (doi:{source.doi}). Estimates: "
        "posterior means with 95% intervals (highest-density for the response proportions; "
        "equal-tailed for the reported comparisons, which come from the summary-data model that "
        "takes the printed intervals and p bounds as data, averaged over their readings)."
    )
    others = [p.label for p in aggregate.spec.prior_sets() if p.label != prior]
    prior_note = f"Prior: {prior} ({aggregate.spec.priors.describe()})" + (
        "; under " + " and ".join(others) + " see Posterior summaries." if others else "."
    )
    limits = [*ambiguous_readings(result.audit), *FIXED_LIMITS]
    return first_screen(
        headline,
        safety,
        audit_flags(result.audit),
        limits,
        intro=intro,
        convergence=convergence,
        prior_note=prior_note,
    )
