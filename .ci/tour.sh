#!/usr/bin/env bash
# The README's tour, run as written: every ```sh block between "## A five-minute tour" and the
# next "## " heading, in order, in one bash (set -euo pipefail, each command echoed), against a
# fresh `agentrail serve` started the way "Set up" says (data directory ./agentrail-data,
# 127.0.0.1:7700) in an empty directory holding a copy of examples/. One substitution: the
# tour's `alias agentrail='cargo run ...'` (a release build) becomes the binary the tests built.
# Fails on any command's failure, and on any answer that says "0 results": the tour's example
# data must give every question an answer.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=$repo/${AGENTRAIL_BIN:-target/debug/agentrail}
work=$(mktemp -d)
cp -r examples "$work/"
python3 - "$repo/README.md" >"$work/tour.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
start = text.index("\n## A five-minute tour")
end = text.index("\n## ", start + 1)
blocks = re.findall(r"```sh\n(.*?)```", text[start:end], re.S)
if not blocks:
    sys.exit("no sh blocks in the tour")
print("set -euo pipefail")
print("set -x")
for b in blocks:
    for line in b.splitlines():
        if line.startswith("alias agentrail="):
            line = 'agentrail() { "$AGENTRAIL_BIN_UNDER_TEST" "$@"; }'
        print(line)
PY
cd "$work"
"$bin" serve >serve.out 2>serve.err &
pid=$!
# KEEP_TOUR=1 keeps the directory (its tour.out) to look at.
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; cd /; if [ -n "${KEEP_TOUR:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi' EXIT
for _ in $(seq 200); do
  [ -s agentrail-data/system/root.key ] && curl -fs http://127.0.0.1:7700/healthz >/dev/null && break
  sleep 0.1
done
curl -fs http://127.0.0.1:7700/healthz >/dev/null || { cat serve.err; echo "the server did not start"; exit 1; }
if ! AGENTRAIL_BIN_UNDER_TEST=$bin bash tour.sh >tour.out 2>&1; then
  cat tour.out
  echo "the README tour failed (the last command above)"; exit 1
fi
if grep -n '^0 results$' tour.out; then
  cat tour.out
  echo "a tour question found nothing (above)"; exit 1
fi
echo "README tour: $(grep -c '^+ ' tour.out) commands ran"
