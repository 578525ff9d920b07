#!/usr/bin/env python3
"""Dask's worker-to-worker transfer, for bench:cluster: a pandas frame of N MiB (float64) made on
one of two worker processes, read by a task pinned to the other, as Dask users move data.

    /usr/bin/python3 bench/peer/dask_transfer.py --mib 64 --repeats 5

Prints one JSON line: {"times_ms": [...], "bytes": N, "version": "..."}: the time from submitting
the reading task to its result (the transfer dominates; a no-op task pinned the same way is
timed too and subtracted).
"""
import argparse
import json
import sys
import time


def make(mib, seed):
    import numpy as np
    import pandas as pd

    return pd.DataFrame({"x": np.full((mib << 20) // 8, 1.5 + seed)})


def nbytes(df):
    return int(df.memory_usage(index=False).sum())


def noop(_):
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compression", default="auto", help="distributed.comm.compression: auto (Dask's default) or none")
    args = p.parse_args()
    import dask
    import distributed

    dask.config.set({"distributed.comm.compression": None if args.compression == "none" else args.compression})
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    client = Client(cluster)
    a, b = list(client.scheduler_info()["workers"])
    times = []
    size = 0
    for i in range(args.repeats + 1):
        data = client.submit(make, args.mib, i, workers=[a], pure=False)
        distributed.wait(data)
        small = client.submit(noop, i, workers=[b], pure=False)
        t0 = time.perf_counter()
        small.result()
        overhead = time.perf_counter() - t0
        t0 = time.perf_counter()
        size = client.submit(nbytes, data, workers=[b], pure=False).result()
        elapsed = time.perf_counter() - t0 - overhead
        del data
        if i > 0:
            times.append(elapsed * 1000)
    client.close()
    cluster.close()
    sys.stdout.write(json.dumps({"times_ms": times, "bytes": size, "version": distributed.__version__}) + "\n")


if __name__ == "__main__":
    main()
