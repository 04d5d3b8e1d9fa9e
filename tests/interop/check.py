"""Checks with pylance what leman wrote: every computed value equals what
Python computes for the same built-in UDF, filtered-out rows stayed null, and
the columns pylance wrote are unchanged.

usage: check.py DATASET_DIR
Columns checked: n = str_len(text) where id % 3 = 0; h = sha256(blob) for
every row; e = hash_embed(text) where id < 1500.
"""
import hashlib
import math
import sys

import lance
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from make_table import ROWS, text  # noqa: E402

DIM = 64


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def hash_embed(s):
    v = np.zeros(DIM, dtype=np.float32)
    token = []
    tokens = []
    for c in s.lower():
        if c.isalnum():
            token.append(c)
        elif token:
            tokens.append("".join(token))
            token = []
    if token:
        tokens.append("".join(token))
    for t in tokens:
        h = fnv1a64(t.encode("utf-8"))
        v[h % DIM] += np.float32(1.0 if h >> 63 == 0 else -1.0)
    norm = np.float32(math.sqrt(float(np.sum(v * v, dtype=np.float32))))
    return v / norm if norm > 0 else v


def main(path):
    ds = lance.dataset(path)
    rows = ds.to_table().to_pylist()
    live = [i for i in range(ROWS) if not (i % 13 == 5 or 1000 <= i < 1100)]
    assert [r["id"] for r in sorted(rows, key=lambda r: r["id"])] == live, "live rows changed"
    checked = 0
    for r in rows:
        i = r["id"]
        assert r["text"] == text(i), f"text of row {i} changed"
        assert r["blob"] == (None if i % 11 == 0 else f"bytes-{i}".encode()), f"blob of row {i} changed"
        assert r["score"] == i / 7.0, f"score of row {i} changed"
        t = r["text"]
        want_n = (None if t is None else len(t)) if i % 3 == 0 else None
        assert r["n"] == want_n, f"n of row {i}: {r['n']} != {want_n}"
        want_h = None if r["blob"] is None else hashlib.sha256(r["blob"]).hexdigest()
        assert r["h"] == want_h, f"h of row {i}: {r['h']} != {want_h}"
        if i < 1500 and t is not None:
            got = np.array(r["e"], dtype=np.float32)
            assert got.shape == (DIM,), f"e of row {i} has shape {got.shape}"
            assert np.allclose(got, hash_embed(t), atol=1e-6), f"e of row {i}: {got} != {hash_embed(t)}"
        else:
            assert r["e"] is None, f"e of row {i} should be null"
        checked += 1
    meta = ds.schema.field("n").metadata or {}
    assert meta.get(b"leman.udf.name") == b"str_len", meta
    print(f"checked {checked} rows")


if __name__ == "__main__":
    main(sys.argv[1])
