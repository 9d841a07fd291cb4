"""Benchmark: reconstructing M pseudo-patient datasets vs one full reanalysis, in the same run.

    .venv/bin/python benchmarks/bench_reconstruct.py [--datasets 100] [--repeats 5]
        [--reanalysis-args "--datasets 4"]

Prints the median reconstruction time (over repeats, after one warm-up that fills the
integer-score search cache), the reanalysis wall time, and their ratio.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import tempfile
import time
from pathlib import Path

from khe_bayes.cli import main
from khe_bayes.study.evidence import load_evidence
from khe_bayes.study.reconstruct import integer_score_multisets, reconstruct_datasets


def main_bench() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--reanalysis-args", default="", help="extra arguments for reanalyze")
    p.add_argument("--skip-reanalysis", action="store_true")
    args = p.parse_args()
    evidence = load_evidence()

    integer_score_multisets.cache_clear()
    t0 = time.perf_counter()
    reconstruct_datasets(evidence, 1, seed=0)
    cold = time.perf_counter() - t0
    times = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        reconstruct_datasets(evidence, args.datasets, seed=r)
        times.append(time.perf_counter() - t0)
    recon = statistics.median(times)
    print(
        f"machine: {platform.platform()}, {platform.processor() or 'cpu'}, python "
        f"{platform.python_version()}"
    )
    print(f"first dataset incl. integer-score search (cold cache): {cold:.2f} s")
    print(
        f"reconstruct {args.datasets} datasets: median {recon:.2f} s over {args.repeats} "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )
    if args.skip_reanalysis:
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        code = main(
            [
                "reanalyze",
                "--out",
                str(Path(tmp) / "r"),
                "--no-progress",
                *shlex.split(args.reanalysis_args),
            ]
        )
        full = time.perf_counter() - t0
    print(f"reanalyze {args.reanalysis_args or '(defaults)'}: {full:.1f} s (exit {code})")
    print(f"ratio reconstruction({args.datasets}) / reanalysis = {recon / full:.4f}")


if __name__ == "__main__":
    main_bench()
