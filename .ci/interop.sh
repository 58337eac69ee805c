#!/usr/bin/env bash
# Interop against a running `agentrail serve` (the debug binary the tests built):
# 1. schemathesis (PyPI) fuzzes the OpenAPI document it serves: no 5xx, no response that violates
#    the document;
# 2. a Parquet export is read back with pyarrow (PyPI) and compared with the NDJSON export;
# 3. OpenTelemetry clients (Python SDK, openai-v2 and OpenInference instrumentations, the JS
#    SDK's JSON exporter) send GenAI spans that are queried back (.ci/otel);
# 4. an ingest answer's signed checkpoint and inclusion proofs are checked in Python
#    (.ci/receipt_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AGENTRAIL_BIN:-target/debug/agentrail}
work=$(mktemp -d)
port=${SCHEMATHESIS_PORT:-7799}
# schemathesis sends many requests with bad credentials on purpose; with the per-address throttle
# on, every later request would be answered 429 and the rest of the API left unexercised, so this
# server turns it off (0). The throttle has its own test (crates/cli/tests/connections.rs).
cat >"$work/config.toml" <<TOML
data_dir = "$work/data"
listen = "127.0.0.1:$port"
max_auth_failures_per_minute = 0
TOML
"$bin" serve --config "$work/config.toml" >"$work/serve.out" 2>"$work/serve.err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  [ -s "$work/data/system/root.key" ] && curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port"
export AGENTRAIL_URL="$url" AGENTRAIL_KEY="$(cat "$work/data/system/root.key")"
"$bin" tenant create st >/dev/null
key=$("$bin" key create --tenant st --scope events:write,events:read,export,verify,pii:reveal,tenant:admin --name schemathesis 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
AGENTRAIL_KEY="$key" "$bin" ingest --tenant st examples/events.ndjson >/dev/null
export ST_KEY="$key"

# Real OpenTelemetry clients: each sends a GenAI conversation (and then the same spans again) to
# its own tenant; the check queries every one back (.ci/otel/interop.py).
runs=()
for mode in manual openai-v2 openai-v2-events openinference js-json; do
  t="otel-$mode"
  "$bin" tenant create "$t" >/dev/null
  k=$("$bin" key create --tenant "$t" --scope events:write,events:read --name otel 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  case $mode in
    js-json) node .ci/otel/export_json.mjs "$url" "$k" "$work/$mode.json" ;;
    # Content on spans: the latest GenAI conventions (JSON-string message attributes).
    openai-v2) OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental \
      OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY \
      python3 .ci/otel/interop.py emit "$mode" "$url" "$k" "$work/$mode.json" ;;
    # Content only in log events (gen_ai.client.inference.operation.details), to /v1/logs.
    openai-v2-events) OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental \
      OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=EVENT_ONLY \
      python3 .ci/otel/interop.py emit "$mode" "$url" "$k" "$work/$mode.json" ;;
    *) python3 .ci/otel/interop.py emit "$mode" "$url" "$k" "$work/$mode.json" ;;
  esac
  runs+=("$t:$k:$work/$mode.json")
done
python3 .ci/otel/interop.py check "$url" "$work/data" "${runs[@]}"

# Parquet read by an independent reader.

python3 - "$work/gen.ndjson" <<'PY'
import json, sys, random
random.seed(7)
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write(json.dumps({"schema_version": "1", "event_id": f"pa-{i}", "event_type": "tool.invocation",
            "session_id": f"s-{i % 17}", "payload": {"tool": {"name": "lookup"}, "status": {"outcome": "ok"},
            "output": "é" * random.randint(1, 300)}}) + "\n")
PY
AGENTRAIL_KEY="$key" "$bin" ingest --tenant st "$work/gen.ndjson" >/dev/null
AGENTRAIL_KEY="$key" "$bin" export --tenant st --format ndjson --out "$work/nd" >/dev/null
AGENTRAIL_KEY="$key" "$bin" export --tenant st --format parquet --out "$work/pq" >/dev/null
python3 .ci/pyarrow_check.py "$work/nd" "$work/pq"
python3 .ci/analytics_check.py "$work/pq"
# Signed receipts checked by an independent reader (Ed25519, RFC 8785 and RFC 9162 from PyPI/spec).
python3 .ci/receipt_check.py "$url" st "$key"
# /metrics read by Prometheus's own Python client parsers, in both formats it negotiates.
python3 - "$url" <<'PY'
import sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_families
def get(accept):
    req = urllib.request.Request(sys.argv[1] + "/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req) as r:
        return r.headers["Content-Type"], r.read().decode()
for accept, want, parse in [(None, "text/plain", text_families),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
         "application/openmetrics-text", om_families)]:
    ct, body = get(accept)
    assert ct.startswith(want), (accept, ct)
    fams = {f.name: f for f in parse(body)}
    ingest = fams["agentrail_ingest_events"]
    assert ingest.type == "counter", ingest.type
    total = sum(s.value for s in ingest.samples if s.name == "agentrail_ingest_events_total")
    assert total > 0, ingest.samples
    print(f"/metrics as {want}: {len(fams)} families, {int(total)} events ingested")
PY
python3 -m schemathesis.cli --config-file .ci/schemathesis.toml run "$url/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --workers 1 --phases examples,coverage,fuzzing
