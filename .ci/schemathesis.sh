#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the OpenAPI document a running `agentrail serve` serves:
# no 5xx and no response that violates the document. Uses the debug binary built by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AGENTRAIL_BIN:-target/debug/agentrail}
work=$(mktemp -d)
port=${SCHEMATHESIS_PORT:-7799}
"$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/serve.out" 2>"$work/serve.err" &
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
python3 -m schemathesis.cli --config-file .ci/schemathesis.toml run "$url/openapi.json" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --workers 2 --phases examples,coverage,fuzzing
