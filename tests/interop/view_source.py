"""A view's source written and changed by pylance, and the view checked by
pylance against its query computed from scratch on the source.

usage: view_source.py PATH, with VIEW_STEP set to
  make    write the source at PATH (stable row ids, 3 fragments of 400 rows)
  change  append 100 rows, update the text of 20, delete 30
  check   read the view at PATH and the source at $VIEW_SOURCE; the view
          must hold `id, grp, len = str_len(text) where grp < 8` exactly
"""
import os
import sys

import lance
import pyarrow as pa

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from make_table import text  # noqa: E402


def rows(first, n):
    ids = list(range(first, first + n))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "text": pa.array([text(i) for i in ids], pa.string()),
        "grp": pa.array([i % 10 for i in ids], pa.int64()),
    })


def make(path):
    lance.write_dataset(rows(0, 1200), path, max_rows_per_file=400, enable_stable_row_ids=True)


def change(path):
    ds = lance.write_dataset(rows(1200, 100), path, mode="append")
    ds = lance.dataset(path)
    ds.update({"text": "concat(text, ' (edited)')"}, where="id >= 100 AND id < 120")
    ds = lance.dataset(path)
    ds.delete("id >= 500 AND id < 530")


def check(path):
    source = lance.dataset(os.environ["VIEW_SOURCE"]).to_table(filter="grp < 8", with_row_id=True).to_pylist()
    want = sorted(
        (r["_rowid"], r["id"], r["grp"], None if r["text"] is None else len(r["text"])) for r in source
    )
    view = lance.dataset(path).to_table(columns=["__source_row_id", "id", "grp", "len"]).to_pylist()
    have = sorted((r["__source_row_id"], r["id"], r["grp"], r["len"]) for r in view)
    assert len({r[0] for r in have}) == len(have), "a source row is held twice"
    assert have == want, f"view differs from its query: {len(have)} rows, {len(want)} wanted"
    print(f"checked {len(have)} rows")


if __name__ == "__main__":
    {"make": make, "change": change, "check": check}[os.environ["VIEW_STEP"]](sys.argv[1])
