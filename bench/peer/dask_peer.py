#!/usr/bin/env python3
"""Python peer benchmark: Dask distributed running dpl's benchmark pipelines, written as a Dask
user writes them (futures, as_completed, data left on the workers).

Spawned by bench/peers.ts. Prints exactly one line of JSON to stdout; diagnostics go to stderr.

    /usr/bin/python3 bench/peer/dask_peer.py --pipeline readme --batches 2000 [--workers 2]
    /usr/bin/python3 bench/peer/dask_peer.py --pipeline noop --batches 20000

readme: dplutils' README pipeline: each source batch is a one-row frame {run_id, id};
``generate`` adds a random ``sample``; ``round`` takes 10 generated rows at a time; ``resid``
runs on each rounded batch. noop: one task returning its input, once per one-row batch.

Needs Debian's python3-distributed and python3-pandas (run with /usr/bin/python3).
"""

import argparse
import json
import platform
import sys
import time
import uuid


def log(msg):
    print(f"[dask-peer] {msg}", file=sys.stderr, flush=True)


def generate_sample(df):
    import numpy as np

    return df.assign(sample=np.random.random(len(df)))


def round_sample(*dfs, decimals=1):
    import pandas as pd

    df = pd.concat(dfs, ignore_index=True)
    return df.assign(rounded=df["sample"].round(decimals))


def calc_residual(df):
    return df.assign(residual=df["rounded"] - df["sample"])


def noop(df):
    return df


def source_batch(run_id, i):
    import pandas as pd

    return pd.DataFrame({"run_id": [run_id], "id": [i]})


def run_readme(client, batches):
    from distributed import as_completed

    run_id = str(uuid.uuid4())
    generated = [client.submit(generate_sample, source_batch(run_id, i), pure=False) for i in range(batches)]
    ac = as_completed(generated)
    kind = {f.key: "generate" for f in generated}
    group = []
    outputs = rows = 0
    for f in ac:
        k = kind.pop(f.key)
        if k == "generate":
            group.append(f)
            if len(group) == 10:
                r = client.submit(round_sample, *group, decimals=2, pure=False)
                kind[r.key] = "round"
                ac.add(r)
                group = []
        elif k == "round":
            r = client.submit(calc_residual, f, pure=False)
            kind[r.key] = "resid"
            ac.add(r)
        else:
            df = f.result()
            outputs += 1
            rows += len(df)
    if group:
        r = client.submit(round_sample, *group, decimals=2, pure=False)
        rows += len(client.submit(calc_residual, r, pure=False).result())
        outputs += 1
    return outputs, rows


def run_noop(client, batches):
    from distributed import as_completed

    run_id = str(uuid.uuid4())
    futures = client.map(noop, [source_batch(run_id, i) for i in range(batches)], pure=False)
    outputs = rows = 0
    for _, df in as_completed(futures, with_results=True):
        outputs += 1
        rows += len(df)
    return outputs, rows


def run_map_chain(client, batches, first, second, third):
    """Each batch's three tasks as Dask users write a chain: futures that take futures."""
    from distributed import as_completed

    run_id = str(uuid.uuid4())
    one = client.map(first, [source_batch(run_id, i) for i in range(batches)], pure=False)
    three = client.map(third, client.map(second, one, pure=False), pure=False)
    outputs = rows = 0
    for _, df in as_completed(three, with_results=True):
        outputs += 1
        rows += len(df)
    return outputs, rows


def run_chain(client, batches):
    from peer_tasks import parse, scale, score

    return run_map_chain(client, batches, parse, scale, score)


def run_rows(client, batches):
    from peer_tasks import calc, expand, keep

    return run_map_chain(client, batches, expand, calc, keep)


def run_words(client, batches):
    from peer_tasks import code, label, pick

    return run_map_chain(client, batches, label, code, pick)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pipeline", choices=["readme", "noop", "chain", "rows", "words"], required=True)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    t_start = time.perf_counter()
    import distributed
    import pandas as pd
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    ready = time.perf_counter()
    run = {"readme": run_readme, "noop": run_noop, "chain": run_chain, "rows": run_rows, "words": run_words}[args.pipeline]
    outputs, rows = run(client, args.batches)
    own = time.perf_counter() - ready
    client.close()
    cluster.close()
    from peer_tasks import ROWS_PER_BATCH

    if rows != args.batches * ROWS_PER_BATCH[args.pipeline]:
        log(f"expected {args.batches} rows, got {rows}")
        sys.exit(3)
    sys.stdout.write(
        json.dumps(
            {
                "peer": "dask",
                "version": distributed.__version__,
                "python": platform.python_version(),
                "pandas": pd.__version__,
                "outputs": outputs,
                "rows": rows,
                "own_s": own,
                "startup_s": ready - t_start,
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
