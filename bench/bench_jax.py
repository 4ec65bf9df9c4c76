"""Benchmark: gradproof.jax against jax.test_util.check_grads on hand-written MLP gradients.

Each workload is an MLP loss whose backward pass is written by hand as a
``jax.custom_vjp`` rule (tanh hidden layers, squared error, batch 64, float64),
checked once with the right rule and once with one planted wrong element
(``dW2[3, 5]`` off by 1% of the block's largest entry). gradproof checks every
coordinate; ``check_grads(f, (params,), order=1, modes=["rev"])`` checks the
VJP along a random direction.

gradproof runs in three modes: ``probe`` (random ±1 directions per block, then
bisection to the wrong elements), ``sample`` (32 coordinates per block) and
``full`` (every coordinate; on the 92k-parameter MLP only with ``--full-large``).
gradproof's times include JAX compilation, which every check pays anew;
check_grads' time is the best of 3 calls.

Run: ``python bench/bench_jax.py`` (prints a markdown table; about a minute on 2
cores; ``--full-large`` adds about 6 minutes).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from _summary import gradproof_row
from jax.test_util import check_grads

import gradproof
import gradproof.jax

jax.config.update("jax_enable_x64", True)

BATCH = 64
PLANTED = ("W2", (3, 5))
WORKLOADS = {"MLP 20-64-64-1": (20, 64, 64, 1), "MLP 100-256-256-1": (100, 256, 256, 1)}


def make_loss(sizes: tuple[int, ...], planted: bool) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """An MLP loss with a hand-written custom_vjp backward; optionally one wrong element."""
    rng = np.random.default_rng(0)
    params = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        params[f"W{i}"] = jnp.asarray(rng.normal(size=(n_in, n_out)) / np.sqrt(n_in))
        params[f"b{i}"] = jnp.asarray(0.1 * rng.normal(size=n_out))
    X = jnp.asarray(rng.normal(size=(BATCH, sizes[0])))
    y = jnp.asarray(rng.normal(size=(BATCH, sizes[-1])))
    layers = len(sizes) - 1

    def forward(p: dict[str, Any]) -> tuple[Any, list[Any]]:
        a, acts = X, [X]
        for i in range(1, layers + 1):
            z = a @ p[f"W{i}"] + p[f"b{i}"]
            a = jnp.tanh(z) if i < layers else z
            acts.append(a)
        return 0.5 * jnp.mean(jnp.sum((a - y) ** 2, axis=1)), acts

    @jax.custom_vjp
    def loss(p: dict[str, Any]) -> Any:
        return forward(p)[0]

    def loss_fwd(p: dict[str, Any]) -> tuple[Any, Any]:
        value, acts = forward(p)
        return value, (p, acts)

    def loss_bwd(res: Any, g: Any) -> tuple[dict[str, Any]]:
        p, acts = res
        grads = {}
        delta = g * (acts[-1] - y) / BATCH
        for i in range(layers, 0, -1):
            grads[f"W{i}"] = acts[i - 1].T @ delta
            grads[f"b{i}"] = jnp.sum(delta, axis=0)
            if i > 1:
                delta = (delta @ p[f"W{i}"].T) * (1 - acts[i - 1] ** 2)
        if planted:
            name, index = PLANTED
            grads[name] = grads[name].at[index].add(0.01 * jnp.max(jnp.abs(grads[name])))
        return ({k: grads[k] for k in p},)

    loss.defvjp(loss_fwd, loss_bwd)
    return loss, params


def run_gradproof(f: Callable[[Any], Any], params: Any, **options: Any) -> dict[str, Any]:
    started = time.perf_counter()
    report = gradproof.jax.check(f, params, **options)
    return gradproof_row(report, time.perf_counter() - started, PLANTED)


def run_check_grads(f: Callable[[Any], Any], params: Any, repeats: int = 3) -> dict[str, Any]:
    calls = [0]

    def counted(p: Any) -> Any:
        calls[0] += 1
        return f(p)

    best, verdict = float("inf"), "pass"
    for _ in range(repeats):
        calls[0] = 0
        started = time.perf_counter()
        try:
            check_grads(counted, (params,), order=1, modes=["rev"])
        except AssertionError:
            verdict = "fail"
        best = min(best, time.perf_counter() - started)
    return {
        "seconds": best,
        "evaluations": calls[0],
        "verdict": verdict,
        "named": "no (no location)",
        "miss": "not stated",
    }


def configurations(params: int, full_large: bool) -> list[tuple[str, dict[str, Any]]]:
    configs: list[tuple[str, dict[str, Any]]] = [
        ("gradproof probe", {"mode": "probe"}),
        ("gradproof sample", {"mode": "sample"}),
    ]
    if params < 10_000 or full_large:
        configs.append(("gradproof full", {}))
    if params < 10_000:
        configs.append(("gradproof full, evaluation='vmap'", {"evaluation": "vmap"}))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--full-large",
        action="store_true",
        help="also check every coordinate of the 92k-parameter MLP (about 3 min per run)",
    )
    args = parser.parse_args()
    print(
        f"jax {jax.__version__}, gradproof {gradproof.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} cores, {jax.default_backend()} backend; float64, batch {BATCH}\n"
    )
    print(
        "| workload | params | gradient | method | time (s) | × check_grads "
        "| loss evaluations | verdict | planted element named | stated miss probability |"
    )
    print("|---|---:|---|---|---:|---:|---:|---|---|---|")
    started = time.perf_counter()
    for workload, sizes in WORKLOADS.items():
        for planted in (False, True):
            f, params = make_loss(sizes, planted)
            n = sum(int(np.size(v)) for v in params.values())
            reference = run_check_grads(f, params)
            rows = [("jax check_grads (rev, order 1)", reference)]
            for label, options in configurations(n, args.full_large):
                rows.append((label, run_gradproof(f, params, **options)))
            for label, r in rows:
                named = r["named"] if planted else "–"
                print(
                    f"| {workload} | {n:,} | {'1 wrong element' if planted else 'correct'} "
                    f"| {label} | {r['seconds']:.3f} | {r['seconds'] / reference['seconds']:.0f} "
                    f"| {r['evaluations']:,} | {r['verdict']} | {named} | {r['miss']} |",
                    flush=True,
                )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
