"""Writes the interop test table with pylance: several fragments, deleted rows.

usage: make_table.py DATASET_DIR
"""
import sys

import lance
import pyarrow as pa

ROWS = 2500
WORDS = ["Lake", "léman", "Genève", "ARROW", "vector", "42", "naïve", "rust", "", "x"]


def text(i):
    if i % 17 == 0:
        return None
    words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(1 + i % 5)]
    return (", " if i % 2 else " ").join(words) + ("!" * (i % 3))


def main(path):
    ids = list(range(ROWS))
    table = pa.table({
        "id": pa.array(ids, pa.int64()),
        "text": pa.array([text(i) for i in ids], pa.string()),
        "blob": pa.array([None if i % 11 == 0 else f"bytes-{i}".encode() for i in ids], pa.binary()),
        "score": pa.array([i / 7.0 for i in ids], pa.float64()),
    })
    ds = lance.write_dataset(table, path, max_rows_per_file=600)
    ds.delete("id % 13 = 5 OR (id >= 1000 AND id < 1100)")
    ds = lance.dataset(path)
    assert len(ds.get_fragments()) >= 4, ds.get_fragments()


if __name__ == "__main__":
    main(sys.argv[1])
