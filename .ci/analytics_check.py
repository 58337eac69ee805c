"""Reads a Parquet export the way an analyst would, with DuckDB and pandas (PyPI): the typed
columns have their types (timestamps as UTC timestamps, tokens as integers, cost and latency as
doubles), and the example events' numbers come out of plain SQL. The export holds
examples/events.ndjson (among other events). The data files sit in data/ beside manifest.json, so the
folder itself is a dataset: DuckDB's glob, pandas' read_parquet(folder) and a pyarrow dataset."""
import json
import pathlib
import sys

import duckdb
import pandas as pd
import pyarrow.dataset as ds

pq_dir = pathlib.Path(sys.argv[1])
manifest = json.loads((pq_dir / "manifest.json").read_text())["manifest"]
files = [str(pq_dir / f["name"]) for f in manifest["files"]]
assert all(f["name"].startswith("data/") for f in manifest["files"]), manifest["files"]
assert sorted(p.name for p in (pq_dir / "data").iterdir()) == sorted(pathlib.Path(f).name for f in files)
glob = str(pq_dir / "data" / "*.parquet")

con = duckdb.connect()
types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}'))").fetchall())
want = {"occurred_at": "TIMESTAMP WITH TIME ZONE", "received_at": "TIMESTAMP WITH TIME ZONE",
        "input_tokens": "BIGINT", "output_tokens": "BIGINT", "cost": "DOUBLE", "latency_ms": "DOUBLE",
        "seq": "UBIGINT", "model_name": "VARCHAR", "stored": "VARCHAR"}
for col, t in want.items():
    assert types.get(col) == t, f"{col}: {types.get(col)}, want {t}"
(rows,) = con.execute(f"SELECT count(*) FROM read_parquet('{glob}')").fetchone()
assert rows == manifest["count"], (rows, manifest["count"])
decisions = con.execute(f"""
    SELECT model_name, count(*), sum(input_tokens), sum(output_tokens), round(sum(cost), 4)
    FROM read_parquet('{glob}') WHERE event_type = 'model.decision' AND event_id LIKE 'evt-%'
    GROUP BY model_name""").fetchall()
assert decisions == [("claude", 3, 812 + 790 + 640, 64 + 58 + 41, round(0.0041 + 0.0039 + 0.0031, 4))], decisions
reviews = dict(con.execute(f"""
    SELECT review_decision, count(*) FROM read_parquet('{glob}')
    WHERE event_type = 'human.review' AND event_id LIKE 'evt-%' GROUP BY review_decision""").fetchall())
assert reviews == {"approve": 2, "reject": 1}, reviews
(first,) = con.execute(f"SELECT min(occurred_at) FROM read_parquet('{glob}') WHERE event_id LIKE 'evt-%'").fetchone()
assert first.isoformat().startswith("2026-11-25T09:00:00"), first

assert ds.dataset(pq_dir / "data", format="parquet").count_rows() == manifest["count"]
df = pd.read_parquet(pq_dir / "data")
assert len(df) == manifest["count"], (len(df), manifest["count"])
assert str(df["occurred_at"].dtype).startswith("datetime64[") and "UTC" in str(df["occurred_at"].dtype), df["occurred_at"].dtype
ex = df[df["event_id"].str.startswith("evt-")]
assert ex.loc[ex["event_type"] == "tool.invocation", "latency_ms"].sum() == 311.5 + 205.0
# The export was made by a key with events:read: the content columns hold the sealed fields,
# tokenized (the customer's email is a token), while `stored` keeps them sealed.
(prompt, stored) = con.execute(f"SELECT prompt, stored FROM read_parquet('{glob}') WHERE event_id = 'evt-0002'").fetchone()
assert prompt and "tok_email_" in prompt and "jane@example.com" not in prompt, prompt
assert '"$enc"' in stored and "tok_email_" not in stored, stored[:200]
print(f"duckdb and pandas: {rows} rows, typed columns, the example's 3 decisions and 3 reviews add up, content tokenized")
