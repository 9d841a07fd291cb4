"""``khe-bayes fit SPEC.toml --out DIR``: fit one declarative spec from models/."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from khe_bayes.commands.reanalyze import EXIT_STRICT, add_sampler_arguments, progress_setting
from khe_bayes.toolkit.errors import InputError
from khe_bayes.toolkit.outputs import check_can_write, staged_directory, write_json
from khe_bayes.toolkit.settings import SamplerSettings, settings_error_message

if TYPE_CHECKING:  # imported in the functions that use them: --help stays fast
    import pymc as pm

    from khe_bayes.families import Family


def register(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit one model spec (models/*.toml)",
        description="Validate SPEC strictly, fit it, and write summary.csv, posterior.nc "
        "(with the spec in its attrs), thresholds.csv, ppc_reported.csv (when the spec lists "
        "[[reported]] results) and manifest.json to --out.",
    )
    p.add_argument("spec", type=Path, help="a spec TOML, e.g. models/normal_eight_schools.toml")
    p.add_argument("--out", required=True, help="output directory (required)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is an earlier result"
    )
    p.add_argument("--strict", action="store_true", help=f"exit {EXIT_STRICT} on poor convergence")
    add_sampler_arguments(p, spec_defaults=True)
    p.add_argument(
        "--backend",
        choices=["nutpie", "pymc"],
        default=None,
        help="sampler (default: the spec's [sampler] backend, nutpie unless it says pymc)",
    )
    p.add_argument(
        "--target-accept",
        type=float,
        default=None,
        help="NUTS target acceptance rate, in (0.5, 1) (default: the spec's [sampler])",
    )
    p.set_defaults(func=run)


def sampler_settings(spec, args: argparse.Namespace) -> SamplerSettings:
    base = getattr(spec, "sampler", SamplerSettings())
    update = {
        k: getattr(args, k)
        for k in ("seed", "draws", "tune", "chains", "cores", "backend", "target_accept")
        if getattr(args, k, None) is not None
    }
    if progress_setting(args) is not None:
        update["progressbar"] = progress_setting(args)
    try:
        return SamplerSettings(**{**base.model_dump(), **update})
    except ValueError as exc:
        raise InputError(settings_error_message(exc)) from None


def check_quantity(model: pm.Model, quantity: str, spec_path: Path, key: str) -> None:
    """``quantity`` must name a scalar variable of the model, or one element (``name[label]``)
    of a variable with one labelled dimension, as ``select_draws`` reads it."""
    posterior_vars = {v.name for v in (*model.free_RVs, *model.deterministics)}
    name, _, label = quantity.partition("[")
    if name not in posterior_vars:
        known = sorted(posterior_vars)
        raise InputError(
            f"{quantity!r}: the model has no variable {name!r}; it has {known}",
            file=spec_path,
            key=key,
        )
    dims = model.named_vars_to_dims.get(name) or ()
    if not label:
        if model[name].type.ndim != 0:
            raise InputError(
                f"{quantity!r} has dimension(s) {list(dims)}; name one element, e.g. {name}[label]",
                file=spec_path,
                key=key,
            )
        return
    label = label.removesuffix("]")
    if len(dims) != 1:
        raise InputError(
            f"{quantity!r}: {name} has dimension(s) {list(dims)}, not one labelled dimension",
            file=spec_path,
            key=key,
        )
    labels = list(model.coords[dims[0]])
    if label not in labels:
        raise InputError(
            f"{quantity!r}: {label!r} is not a {dims[0]} label; labels: {labels}",
            file=spec_path,
            key=key,
        )


def check_spec_against_model(
    spec, family: Family, model: pm.Model, spec_path: Path, data=None
) -> None:
    """Every ``[[thresholds]]`` and ``[[reported]]`` entry must make sense for this model, so a
    misspelt quantity or test fails before sampling, not after."""
    from khe_bayes.toolkit.spec_ppc import TESTS, entry_scale

    for i, t in enumerate(spec.thresholds):
        check_quantity(model, t.quantity, spec_path, f"thresholds[{i + 1}].quantity")
    tests = TESTS.get(family.name, {})
    for i, entry in enumerate(spec.reported):
        if not tests:
            raise InputError(
                f"the {family.name} family has no tests for [[reported]] entries (binomial and "
                "normal have; the KHE statistics are checked by khe-bayes reanalyze)",
                file=spec_path,
                key=f"reported[{i + 1}]",
            )
        if entry.test not in tests:
            raise InputError(
                f"unknown test {entry.test!r} for the {family.name} family; known: {sorted(tests)}",
                file=spec_path,
                key=f"reported[{i + 1}].test",
            )
        compares = getattr(data, "compare", None)  # formula families: categorical contrasts
        if entry.test == "risk_difference_wald" and (
            entry.quantity.partition("[")[0] not in compares
            if compares is not None
            else "treated" not in model.named_vars
        ):
            raise InputError(
                "risk_difference_wald needs an arm column in the data"
                + (" and a quantity comparing two of its levels" if compares is not None else ""),
                file=spec_path,
                key=f"reported[{i + 1}].test",
            )
        check_quantity(model, entry.quantity, spec_path, f"reported[{i + 1}].quantity")
        try:
            entry_scale(entry, family.scales(spec))
        except ValueError as exc:
            raise InputError(str(exc), file=spec_path, key=f"reported[{i + 1}]") from None


def load_and_build(spec, family: Family, spec_dir: Path, spec_path: Path):
    """Load the data and build the model; a spec error without a file names the spec, and each
    SpecWarning (e.g. one group, a precision-like tau prior) is printed as one line."""
    from khe_bayes.families.base import SpecWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        try:
            data = family.load_data(spec, spec_dir)
            model = family.build(spec, data)
        except InputError as exc:
            if exc.file is None:
                raise InputError(exc.message, file=spec_path, key=exc.key) from None
            raise
    for w in caught:
        if issubclass(w.category, SpecWarning):
            print(f"khe-bayes: warning: {spec_path}: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return data, model


def run(args: argparse.Namespace) -> int:
    from khe_bayes.families import load_spec

    spec, family = load_spec(args.spec)
    settings = sampler_settings(spec, args)
    check_can_write(Path(args.out), args.overwrite)
    from khe_bayes.toolkit.budget import warn_if_long
    from khe_bayes.toolkit.datatree import save
    from khe_bayes.toolkit.manifest import build_manifest, sha256_file
    from khe_bayes.toolkit.sampling import fit
    from khe_bayes.toolkit.spec_ppc import check_reported
    from khe_bayes.toolkit.summary import diagnostics, summarize, threshold_probabilities

    spec_dir = args.spec.resolve().parent
    data, model = load_and_build(spec, family, spec_dir, args.spec)
    check_spec_against_model(spec, family, model, args.spec, data)
    warn_if_long(model, settings)
    idata = fit(
        model,
        settings,
        posterior_predictive=True,
        attrs={
            "spec": spec.model_dump(mode="json"),
            "family": family.name,
            "spec_folder": str(spec_dir),
        },
    )
    var_names = [v for v in family.summary_vars(spec) if v in idata.posterior]
    summary = summarize(idata, var_names, family.descriptions_for(spec))
    diag = diagnostics(idata)
    inputs = {str(args.spec): sha256_file(args.spec)}
    inputs.update({str(p): sha256_file(p) for p in family.data_files(spec, spec_dir)})
    with staged_directory(args.out, overwrite=args.overwrite) as stage:
        summary.to_csv(stage / "summary.csv", float_format="%.6g")
        save(idata, stage / "posterior.nc")
        outputs = ["summary.csv", "posterior.nc", "manifest.json"]
        if spec.thresholds:
            threshold_probabilities(idata, spec.thresholds).to_csv(
                stage / "thresholds.csv", index=False, float_format="%.6g"
            )
            outputs.append("thresholds.csv")
        if spec.reported:
            ppc = check_reported(
                spec, family.name, data, idata, quantity_scales=family.scales(spec)
            )
            ppc.to_csv(stage / "ppc_reported.csv", index=False, float_format="%.6g")
            outputs.append("ppc_reported.csv")
        manifest = build_manifest(
            command="fit",
            settings={"sampler": settings.model_dump(), "family": family.name},
            inputs=inputs,
            outputs=outputs,
        )
        manifest["diagnostics"] = diag
        write_json(stage / "manifest.json", manifest)
    print(summary.drop(columns=["description"]).to_string(float_format=lambda x: f"{x:.3f}"))
    if spec.reported:
        for _, row in ppc.iterrows():
            print(f"reported {row['statistic']} ({row['test']}): {row['verdict']}")
    if not diag["ok"]:
        print(f"khe-bayes: warning: poor convergence: {diag['problems']}", file=sys.stderr)
        if args.strict:
            return EXIT_STRICT
    return 0
