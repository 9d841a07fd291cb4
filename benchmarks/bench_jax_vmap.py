"""Experiment: the response model's 100 datasets x 4 chains as one vectorized JAX program.

Not part of khe-bayes (JAX and blackjax are not in the lock file); it measures the one idea for
compile-once that benchmarks/RESULTS.md had left untried. Run it in a separate environment:

    python3.11 -m venv /tmp/jaxenv
    /tmp/jaxenv/bin/pip install -r requirements.lock jax blackjax
    /tmp/jaxenv/bin/pip install --no-deps -e .
    XLA_FLAGS=--xla_force_host_platform_device_count=2 /tmp/jaxenv/bin/python \\
        benchmarks/bench_jax_vmap.py --datasets 100

The log density comes from the same PyMC builder (its ``pm.Data`` containers become inputs);
each (dataset, chain) runs blackjax's window adaptation and NUTS (same draws, tuning steps and
target acceptance as bench_compile_once.py), vmapped over chains and datasets and split over the
XLA host devices with ``pmap``. Under vmap every NUTS iteration costs the deepest tree of any
lane, which is the price of vectorizing. Prints the wall time, with the XLA compilation.
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)


def main() -> None:
    import blackjax
    import pytensor.tensor as pt
    from pymc.sampling.jax import get_jaxified_graph
    from pytensor.graph.replace import graph_replace

    from khe_bayes.study.evidence import load_evidence
    from khe_bayes.study.hierarchical import build_response_model
    from khe_bayes.study.reconstruct import reconstruct_datasets
    from khe_bayes.toolkit.compiled import model_data

    p = argparse.ArgumentParser()
    p.add_argument("--datasets", type=int, default=100)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=20170815)
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    datasets = reconstruct_datasets(load_evidence(), args.datasets, args.seed)

    started = time.perf_counter()
    models = [build_response_model(d) for d in datasets]
    model = models[0]
    shared = list(model.data_vars)
    inputs = [pt.tensor(name=v.name, shape=v.type.shape, dtype=v.dtype) for v in shared]
    logp = graph_replace(model.logp(), dict(zip(shared, inputs, strict=True)))
    logp_fn = get_jaxified_graph(inputs=[*model.value_vars, *inputs], outputs=[logp])
    point = model.initial_point()
    shapes = [np.shape(point[v.name]) for v in model.value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    bounds = np.cumsum([0, *sizes])

    def logdensity(x, data):
        parts = [x[a:b].reshape(s) for a, b, s in zip(bounds[:-1], bounds[1:], shapes, strict=True)]
        return logp_fn(*parts, *data)[0]

    def run_chain(key, data, x0):
        def density(x):
            return logdensity(x, data)

        adapt_key, draw_key = jax.random.split(key)
        warmup = blackjax.window_adaptation(blackjax.nuts, density, target_acceptance_rate=0.9)
        (state, params), _ = warmup.run(adapt_key, x0, num_steps=args.tune)
        step = blackjax.nuts(density, **params).step

        def one(state, k):
            state, info = step(k, state)
            return state, (state.position, info.is_divergent, info.num_integration_steps)

        return jax.lax.scan(one, state, jax.random.split(draw_key, args.draws))[1]

    devices = jax.local_device_count()
    if args.datasets % devices:
        raise SystemExit(f"--datasets must be a multiple of the {devices} XLA devices")
    lead = (devices, args.datasets // devices)
    stacked = [np.stack([model_data(m)[v.name] for m in models]) for v in shared]
    data = [jnp.asarray(a.reshape(*lead, *a.shape[1:])) for a in stacked]
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.datasets * args.chains)
    keys = keys.reshape(*lead, args.chains, -1)
    x0 = jax.random.uniform(jax.random.PRNGKey(1), (*lead, args.chains, bounds[-1]), minval=-1)
    sample = jax.pmap(jax.vmap(jax.vmap(run_chain, in_axes=(0, None, 0)), in_axes=(0, 0, 0)))
    _, divergent, steps = sample(keys, data, x0)
    steps.block_until_ready()
    elapsed = time.perf_counter() - started
    print(
        f"{args.datasets} datasets x {args.chains} chains on {devices} XLA device(s): "
        f"{elapsed:.1f} s with compilation; mean leapfrog steps {float(steps.mean()):.1f}, "
        f"divergent transitions {int(divergent.sum())}"
    )


if __name__ == "__main__":
    main()
