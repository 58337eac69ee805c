#!/usr/bin/env python3
"""Generates the RFC 8785 (JCS) expected outputs for the inputs in testdata/jcs/input/.

For every input/<name>.json this writes
  output/<name>.json  the canonical bytes (UTF-8, no final newline), and
  outhex/<name>.txt   the same bytes in hex, 32 per line,
as produced by the independent implementation `rfc8785` (Trail of Bits; PyPI, pip install
rfc8785==0.1.4), not by this repository's Rust code.

The inputs are this project's own, written for these tests. They are parsed like the Rust
canonicalizer parses (crates/event/src/json.rs): duplicate keys, NaN/Infinity and integer
literals beyond +-(2^53 - 1) are rejected unless they are exactly the canonical text of a double
(write other such numbers as float literals, 1e16 or 9007199254740993.0, which read as the
nearest double). Any input that fails to parse or canonicalize stops the script with an error,
as does a canonical form that is not a fixed point.

Usage:  python3 -m pip install rfc8785==0.1.4
        python3 testdata/jcs/gen_jcs_vectors.py
"""

import importlib.metadata
import json
import os
import sys

import rfc8785

PINNED = "0.1.4"
MAX_SAFE_INTEGER = 2**53 - 1
HERE = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    sys.exit("gen_jcs_vectors.py: " + msg)


def no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ValueError("duplicate keys %r" % sorted(dup))
    return dict(pairs)


def safe_int(text):
    n = int(text)
    if abs(n) > MAX_SAFE_INTEGER:
        # Accepted only as exactly the canonical text of a double (295147905179352830000 for
        # 2^68): then nothing is rounded.
        if rfc8785.dumps(float(n)) != text.encode():
            raise ValueError("integer literal %s is beyond 2^53 - 1 and would be rounded" % text)
        return float(n)
    return n


def no_constant(name):
    raise ValueError("%s is not JSON" % name)


def load(text):
    return json.loads(
        text, object_pairs_hook=no_duplicates, parse_int=safe_int, parse_constant=no_constant
    )


def main():
    version = importlib.metadata.version("rfc8785")
    if version != PINNED:
        print("warning: rfc8785 %s installed, the outputs were made with %s" % (version, PINNED))
    inputs = sorted(f for f in os.listdir(os.path.join(HERE, "input")) if f.endswith(".json"))
    if not inputs:
        fail("no input/*.json")
    for d in ("output", "outhex"):
        os.makedirs(os.path.join(HERE, d), exist_ok=True)
        for stale in os.listdir(os.path.join(HERE, d)):
            if os.path.splitext(stale)[0] + ".json" not in inputs:
                fail("%s/%s has no input (delete it)" % (d, stale))
    for name in inputs:
        with open(os.path.join(HERE, "input", name), encoding="utf-8") as f:
            text = f.read()
        try:
            canonical = rfc8785.dumps(load(text))
        except (ValueError, rfc8785.CanonicalizationError) as e:
            fail("%s: %s" % (name, e))
        # Canonical output is a fixed point (the canonical form of 1e20 is the integer literal
        # 100000000000000000000, which reads back through safe_int).
        if rfc8785.dumps(load(canonical.decode("utf-8"))) != canonical:
            fail("%s: the canonical form does not canonicalize to itself" % name)
        with open(os.path.join(HERE, "output", name), "wb") as f:
            f.write(canonical)
        hexed = canonical.hex()
        lines = [
            " ".join(hexed[i + j : i + j + 2] for j in range(0, min(64, len(hexed) - i), 2))
            for i in range(0, len(hexed), 64)
        ]
        stem = os.path.splitext(name)[0]
        with open(os.path.join(HERE, "outhex", stem + ".txt"), "w", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        print("%s: %d canonical bytes" % (name, len(canonical)))


if __name__ == "__main__":
    main()
