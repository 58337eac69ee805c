"""Reads a Parquet export with pyarrow (an independent reader) and checks it against the NDJSON
export of the same range: the row count matches the manifest, and every `stored` value is
byte-identical to the NDJSON line."""
import json
import pathlib
import sys

import pyarrow.parquet as pq

nd_dir, pq_dir = map(pathlib.Path, sys.argv[1:3])
manifest = json.loads((pq_dir / "manifest.json").read_text())["manifest"]
nd_manifest = json.loads((nd_dir / "manifest.json").read_text())["manifest"]
assert (manifest["first_seq"], manifest["end_seq"]) == (nd_manifest["first_seq"], nd_manifest["end_seq"]), "different ranges"
lines = []
for f in nd_manifest["files"]:
    lines.extend((nd_dir / f["name"]).read_bytes().split(b"\n")[:-1])
rows = []
for f in manifest["files"]:
    t = pq.read_table(pq_dir / f["name"])
    assert t.num_rows == f["count"], f"{f['name']}: {t.num_rows} rows, manifest says {f['count']}"
    rows.extend(zip(t.column("seq").to_pylist(), t.column("stored").to_pylist()))
assert len(rows) == manifest["count"] == len(lines), (len(rows), manifest["count"], len(lines))
for (seq, stored), line in zip(rows, lines):
    assert stored.encode("utf-8") == line, f"seq {seq}: stored form differs from the NDJSON line"
    assert json.loads(line)["seq"] == seq
print(f"pyarrow: {len(rows)} rows in {len(manifest['files'])} Parquet files, stored forms byte-identical to the NDJSON export")
