#!/usr/bin/env python3
"""Python peer benchmark: dplutils LocalSerialExecutor on the README quickstart pipeline.

Spawned by the TypeScript bench for comparison. Prints exactly one line of JSON
to stdout; all diagnostics go to stderr.

Usage:
    /usr/bin/python3 bench/peer/dplutils_local.py --dplutils /tmp/dplutils \
        [--batches 2000] [--repeats 5] [--warmup 1]

Only ``dplutils.pipeline`` and ``dplutils.pipeline.stream`` are imported; these
need pandas, numpy, networkx and PyYAML (not ray/pyarrow/cloudpickle).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def log(msg):
    print(f"[dplutils-peer] {msg}", file=sys.stderr, flush=True)


def fail(msg, code=2):
    log(f"ERROR: {msg}")
    sys.exit(code)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dplutils", required=True, help="path to a dplutils source checkout (added to sys.path)")
    p.add_argument("--batches", type=int, default=2000, help="max_batches for the executor (default 2000)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warmup runs (default 1)")
    p.add_argument("--pipeline", choices=["readme", "noop", "chain", "rows", "words"], default="readme",
                   help="readme: the README quickstart; noop: one task returning its input")
    args = p.parse_args(argv)
    if args.batches < 1:
        p.error("--batches must be >= 1")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def import_dplutils(path):
    root = os.path.abspath(path)
    pkg_init = os.path.join(root, "dplutils", "__init__.py")
    if not os.path.isfile(pkg_init):
        fail(f"--dplutils {path!r} is not a dplutils checkout (missing {pkg_init})")
    sys.path.insert(0, root)
    try:
        import dplutils
        from dplutils.pipeline import PipelineGraph, PipelineTask
        from dplutils.pipeline.stream import LocalSerialExecutor
    except Exception as e:  # ImportError, or anything raised at import time
        fail(f"importing dplutils from {root} failed: {type(e).__name__}: {e}")
    loaded = os.path.abspath(os.path.dirname(dplutils.__file__))
    if not loaded.startswith(root + os.sep):
        fail(f"dplutils was imported from {loaded}, not from {root}")
    return dplutils, PipelineGraph, PipelineTask, LocalSerialExecutor


def dplutils_version(root, module):
    try:
        out = subprocess.run(
            ["git", "-C", root, "describe", "--tags", "--always", "--dirty"],
            capture_output=True, text=True, timeout=10,
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except Exception:
        pass
    return getattr(module, "__version__", None) or None


def main(argv=None):
    args = parse_args(argv)
    dplutils, PipelineGraph, PipelineTask, LocalSerialExecutor = import_dplutils(args.dplutils)

    import numpy as np
    import pandas as pd

    # README quickstart task functions
    def generate_sample(df):
        return df.assign(sample=np.random.random(len(df)))

    def round_sample(df, decimals=1):
        return df.assign(rounded=df["sample"].round(decimals))

    def calc_residual(df):
        return df.assign(residual=df["rounded"] - df["sample"])

    def noop(df):
        return df

    from peer_tasks import ROWS_PER_BATCH, calc, code, expand, keep, label, parse, pick, scale, score  # chain, rows, words

    def make_executor():
        if args.pipeline == "rows":
            graph = PipelineGraph([PipelineTask("expand", expand), PipelineTask("calc", calc), PipelineTask("keep", keep)])
            return LocalSerialExecutor(graph, max_batches=args.batches)
        if args.pipeline == "words":
            graph = PipelineGraph([PipelineTask("label", label), PipelineTask("code", code), PipelineTask("pick", pick)])
            return LocalSerialExecutor(graph, max_batches=args.batches)
        if args.pipeline == "noop":
            return LocalSerialExecutor(PipelineGraph([PipelineTask("noop", noop)]), max_batches=args.batches)
        if args.pipeline == "chain":
            graph = PipelineGraph([PipelineTask("parse", parse), PipelineTask("scale", scale), PipelineTask("score", score)])
            return LocalSerialExecutor(graph, max_batches=args.batches)
        graph = PipelineGraph([
            PipelineTask("generate", generate_sample),
            PipelineTask("round", round_sample, batch_size=10),
            PipelineTask("resid", calc_residual, num_cpus=2),
        ])
        # Like the README; note LocalSerialExecutor does not pass kwargs to tasks.
        return LocalSerialExecutor(graph, max_batches=args.batches).set_config("round.kwargs.decimals", 2)

    def one_run():
        executor = make_executor()  # construction is not timed
        outputs = 0
        rows = 0
        t0 = time.perf_counter()
        for batch in executor.run():
            outputs += 1
            rows += len(batch.data)
        elapsed = time.perf_counter() - t0
        if rows != args.batches * ROWS_PER_BATCH[args.pipeline]:
            fail(f"expected {args.batches} output rows, got {rows} (in {outputs} output batches)", code=3)
        return elapsed, rows, outputs

    for i in range(args.warmup):
        t, _, _ = one_run()
        log(f"warmup {i + 1}/{args.warmup}: {t:.3f}s")

    times = []
    rows = outputs = None
    for i in range(args.repeats):
        t, rows, outputs = one_run()
        times.append(t)
        log(f"repeat {i + 1}/{args.repeats}: {t:.3f}s rows={rows} outputs={outputs}")

    result = {
        "peer": "dplutils",
        "version": dplutils_version(os.path.abspath(args.dplutils), dplutils),
        "python": platform.python_version(),
        "pandas": pd.__version__,
        "batches": args.batches,
        "rows": rows,
        "outputs": outputs,
        "times_s": times,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
