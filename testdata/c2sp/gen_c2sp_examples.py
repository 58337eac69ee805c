#!/usr/bin/env python3
"""Generates this project's C2SP examples in testdata/c2sp/, independently of the Rust code.

Uses Python's `cryptography` package (PyPI; made with 48.0.0) for Ed25519 and the standard
library for everything else. Formats, as specified at c2sp.org:

* signed-note: the note text (lines ending in "\\n"), a blank line, then one line per signature,
  "\\u2014 <key name> <base64(key id (4 bytes, big-endian) || signature)>\\n". An Ed25519 key
  (type 0x01) has key id = SHA-256(<name> || "\\n" || 0x01 || 32-byte public key)[:4] and signs the
  note text; its verifier key is "<name>+<hex key id>+<base64(0x01 || public key)>" and its
  private key "PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>".
* tlog-checkpoint: text = origin, tree size (decimal), base64 of the RFC 6962 root, then optional
  extension lines.
* tlog-cosignature (Ed25519, type 0x04): key id over 0x04 instead of 0x01; it signs
  "cosignature/v1\\ntime <timestamp>\\n" + the checkpoint text, and the signature line carries
  key id || timestamp (8 bytes, big-endian) || signature.
* tlog-proof@v1: "c2sp.org/tlog-proof@v1\\n", "index <n>\\n", one base64 inclusion-proof hash per
  line (leaf sibling first), a blank line, then the signed checkpoint verbatim.

The tree is the 8 reference leaves of the steering repo's SPECS.md section 1.4, hashed with RFC
6962 by ../merkle/gen_merkle_vectors.py (imported: one implementation serves both generators); its
root is checked against the value listed there. Keys come from fixed seeds, and Ed25519 is deterministic, so the
output is the same on every run. The script verifies every signature and the inclusion proof it
writes, and stops with an error if anything does not check.

Outputs:
  checkpoint_example.txt            size-8 checkpoint, log signature + witness cosignature
  checkpoint_extension_example.txt  size-5 checkpoint with an extension line, both signatures
  tlog_proof_example.txt            tlog-proof for leaf 5 against checkpoint_example.txt
  keys.txt                          the seeds and the key strings the tests use

Usage:  python3 -m pip install cryptography==48.0.0
        python3 testdata/c2sp/gen_c2sp_examples.py
"""

import base64
import hashlib
import importlib.metadata
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HERE = os.path.dirname(os.path.abspath(__file__))

ORIGIN = "example.com/audit/tenant-a"  # the log's key name is its origin
WITNESS = "witness.example/w1"
LOG_SEED = hashlib.sha256(b"audit-log example log key").digest()
WITNESS_SEED = hashlib.sha256(b"audit-log example witness key").digest()
TIMESTAMP = 1_700_000_000
EXTENSION_TIMESTAMP = 1_700_000_123
EXTENSION_LINE = "agentrail-test extension line"
PROOF_INDEX = 5

SIG_ED25519 = 0x01
SIG_COSIGNATURE_V1 = 0x04

# The RFC 6962 tree, the reference leaves and their roots come from the Merkle generator beside
# this folder (one hashlib implementation serves both).
sys.path.insert(0, os.path.join(HERE, "..", "merkle"))
from gen_merkle_vectors import EXPECTED_ROOTS, REFERENCE_LEAVES as LEAVES  # noqa: E402
from gen_merkle_vectors import b64, leaf_hash, mth, path, verify_inclusion  # noqa: E402


def fail(msg):
    sys.exit("gen_c2sp_examples.py: " + msg)


# ---- keys and signatures ------------------------------------------------------------------------


class Key:
    def __init__(self, name, seed, sig_type):
        self.name, self.seed, self.sig_type = name, seed, sig_type
        self.private = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = hashlib.sha256(
            name.encode() + b"\n" + bytes([sig_type]) + self.public
        ).digest()[:4]

    def verifier(self):
        return "%s+%s+%s" % (self.name, self.key_id.hex(), b64(bytes([self.sig_type]) + self.public))

    def private_key_string(self):
        return "PRIVATE+KEY+%s+%s+%s" % (
            self.name,
            self.key_id.hex(),
            b64(bytes([self.sig_type]) + self.seed),
        )

    def signature_line(self, text, timestamp=None):
        if self.sig_type == SIG_ED25519:
            message, prefix = text.encode(), b""
        else:
            message = ("cosignature/v1\ntime %d\n" % timestamp).encode() + text.encode()
            prefix = timestamp.to_bytes(8, "big")
        sig = self.private.sign(message)
        self.private.public_key().verify(sig, message)  # raises if it does not verify
        return "\u2014 %s %s\n" % (self.name, b64(self.key_id + prefix + sig))


def checkpoint_text(size, extensions=()):
    root = mth(LEAVES[:size])
    if root.hex() != EXPECTED_ROOTS[size]:
        fail("root of size %d is %s, SPECS.md section 1.4 says %s" % (size, root.hex(), EXPECTED_ROOTS[size]))
    return "%s\n%d\n%s\n" % (ORIGIN, size, b64(root)) + "".join(e + "\n" for e in extensions)


def check_note(note, keys):
    """Parses a signed note back and verifies each line with the public keys alone."""
    text, sep, sigs = note.rpartition("\n\n")
    text += "\n"
    if not sep or not sigs.endswith("\n"):
        fail("malformed note")
    lines = sigs[:-1].split("\n")
    if len(lines) != len(keys):
        fail("expected %d signature lines" % len(keys))
    for line, key in zip(lines, keys):
        dash, name, blob = line.split(" ")
        raw = base64.b64decode(blob, validate=True)
        if dash != "\u2014" or name != key.name or raw[:4] != key.key_id:
            fail("signature line %r does not match key %s" % (line, key.name))
        pub = Ed25519PublicKey.from_public_bytes(key.public)
        if key.sig_type == SIG_ED25519:
            pub.verify(raw[4:], text.encode())
        else:
            ts = int.from_bytes(raw[4:12], "big")
            pub.verify(raw[12:], ("cosignature/v1\ntime %d\n" % ts).encode() + text.encode())


def write(name, text):
    with open(os.path.join(HERE, name), "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print("%s: %d bytes" % (name, len(text.encode())))


def main():
    print("cryptography", importlib.metadata.version("cryptography"))
    log = Key(ORIGIN, LOG_SEED, SIG_ED25519)
    witness = Key(WITNESS, WITNESS_SEED, SIG_COSIGNATURE_V1)

    text = checkpoint_text(8)
    checkpoint = text + "\n" + log.signature_line(text) + witness.signature_line(text, TIMESTAMP)
    check_note(checkpoint, [log, witness])

    ext_text = checkpoint_text(5, [EXTENSION_LINE])
    ext_checkpoint = (
        ext_text
        + "\n"
        + log.signature_line(ext_text)
        + witness.signature_line(ext_text, EXTENSION_TIMESTAMP)
    )
    check_note(ext_checkpoint, [log, witness])

    proof = path(PROOF_INDEX, LEAVES)
    leaf = leaf_hash(LEAVES[PROOF_INDEX])
    if not verify_inclusion(PROOF_INDEX, len(LEAVES), leaf, proof, mth(LEAVES)):
        fail("the inclusion proof of leaf %d does not verify" % PROOF_INDEX)
    tlog_proof = (
        "c2sp.org/tlog-proof@v1\nindex %d\n" % PROOF_INDEX
        + "".join(b64(h) + "\n" for h in proof)
        + "\n"
        + checkpoint
    )

    keys = (
        "# Keys of the examples in this folder (written by gen_c2sp_examples.py).\n"
        "log-seed %s\n" % LOG_SEED.hex()
        + "log-private-key %s\n" % log.private_key_string()
        + "log-verifier-key %s\n" % log.verifier()
        + "witness-seed %s\n" % WITNESS_SEED.hex()
        + "witness-verifier-key %s\n" % witness.verifier()
        + "cosignature-time %d\n" % TIMESTAMP
        + "extension-cosignature-time %d\n" % EXTENSION_TIMESTAMP
        + "leaf-%d-hash %s\n" % (PROOF_INDEX, leaf.hex())
    )

    write("checkpoint_example.txt", checkpoint)
    write("checkpoint_extension_example.txt", ext_checkpoint)
    write("tlog_proof_example.txt", tlog_proof)
    write("keys.txt", keys)


if __name__ == "__main__":
    main()
