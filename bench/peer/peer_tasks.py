"""Task functions of the chain and rows pipelines (bench/pipelines/chain.ts, rows.ts), shared by
the Python peers (dplutils_local.py, dask_peer.py): each peer runs the same pandas code."""
import numpy as np
import pandas as pd

# chain: three map tasks
def parse(df):
    return df.assign(x=np.arange(len(df)) + 0.5)


def scale(df):
    return df.assign(y=df["x"] * 2)


def score(df):
    return df.assign(z=df["y"] + 1)


# rows: 100,000 rows per source batch, an arithmetic column, half filtered out
ROWS = 100_000


def expand(df):
    i = int(df["id"].iloc[0])
    x = ((np.arange(ROWS) * 7919 + i * 104729) % ROWS) / ROWS
    return pd.DataFrame({"id": np.full(ROWS, i, dtype=np.int32), "x": x})


def calc(df):
    return df.assign(y=df["x"] * 3 + 1)


def keep(df):
    return df[df["x"] < 0.5]


# words: 20,000 rows with a string column per source batch, a derived string column, a tenth kept
WORDS = 20_000


def label(df):
    i = int(df["id"].iloc[0])
    n = np.arange(WORDS)
    return pd.DataFrame({"name": [f"s{i}-{k}" for k in range(WORDS)], "x": (n % 97).astype(np.int32)})


def code(df):
    return df.assign(code=df["name"].str[:3].str.upper())


def pick(df):
    return df[df["name"].str.endswith("7")]


# Rows each pipeline delivers per source batch.
ROWS_PER_BATCH = {"readme": 1, "noop": 1, "chain": 1, "rows": ROWS // 2, "words": WORDS // 10}
