"""Receipts checked the way a client would keep and check them, with nothing from agentrail:
PyPI `cryptography` (Ed25519) and `rfc8785` (JSON canonicalization), the C2SP signed-note and
tlog-checkpoint formats and RFC 9162 inclusion proofs written out here from their specs.

usage: receipt_check.py URL TENANT KEY   (KEY may write and read events)

Ingests a batch with `?proofs=true`; checks the answer's checkpoint signature with the tenant's
verifier key, then for every receipt: the stored event re-canonicalized hashes to the receipt's
hash, its leaf hash is SHA-256(0x00 || those bytes), and its inclusion path leads to the signed root.
A changed byte in the checkpoint or a proof moved to another position must fail.
"""
import base64, hashlib, json, sys, urllib.error, urllib.request

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

url, tenant, key = sys.argv[1:4]


def call(method, path, body=None, ctype="application/x-ndjson"):
    req = urllib.request.Request(url + path, data=body, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {path}: {e.code} {e.read().decode()}")


def open_note(text, vkey):
    """C2SP signed-note: the body up to the blank line, then `— name base64(keyhash4 || sig)`."""
    name, key_hash, b64 = vkey.strip().split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1, "an Ed25519 verifier key"
    want = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert want.hex() == key_hash, "the key hash in the verifier key"
    body, sigs = text.split("\n\n", 1)
    body += "\n"
    for line in sigs.splitlines():
        parts = line.split(" ")
        if parts[0] != "\u2014" or parts[1] != name:
            continue
        sig = base64.b64decode(parts[2])
        if sig[:4] != want:
            continue
        Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], body.encode())
        return body
    raise AssertionError("no signature by " + name)


def root_from_inclusion(index, size, leaf, path):
    """RFC 9162 §2.1.3.2."""
    assert index < size
    fn, sn, r = index, size - 1, leaf
    for p in path:
        assert sn != 0, "proof too long"
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "proof too short"
    return r


events = "".join(json.dumps({
    "schema_version": "1", "event_id": f"rc-{i}", "event_type": "human.review", "session_id": "s-rc",
    "payload": {"decision": "approve" if i % 3 else "reject", "reviewer": {"id": "r-7"},
                "proposed_action": {"summary": "refund 42.50 EUR"}, "rationale": "checked é ∑ ☃",
                "presented_at": "2026-11-25T09:00:02.000000000Z",
                "decided_at": "2026-11-25T09:00:19.400000000Z"}}) + "\n" for i in range(40))
answer = json.loads(call("POST", f"/v1/tenants/{tenant}/events?proofs=true", events.encode()))
vkey = call("GET", f"/v1/tenants/{tenant}/verifier-key").decode()
body = open_note(answer["checkpoint"], vkey)
origin, size, root = body.splitlines()[:3]
assert origin.endswith("/tenants/" + tenant), origin
size, root = int(size), base64.b64decode(root)
for r in answer["receipts"]:
    got = json.loads(call("GET", f"/v1/tenants/{tenant}/events/{r['event_id']}?view=stored"))["event"]
    claimed = got.pop("hash")
    stored = rfc8785.dumps(got)
    assert hashlib.sha256(stored).hexdigest() == r["hash"] == claimed, r["event_id"]
    leaf = hashlib.sha256(b"\x00" + stored).digest()
    assert leaf.hex() == r["leaf_hash"], r["event_id"]
    path = [bytes.fromhex(h) for h in r["inclusion"]]
    assert root_from_inclusion(r["seq"], size, leaf, path) == root, r["event_id"]
    assert root_from_inclusion(r["seq"] ^ 1, size, leaf, path) != root if r["seq"] ^ 1 < size else True
# Tampering is caught: one changed digit of the size, and the signature no longer holds.
forged = answer["checkpoint"].replace(f"\n{size}\n", f"\n{size + 1}\n", 1)
try:
    open_note(forged, vkey)
    raise AssertionError("a forged checkpoint verified")
except InvalidSignature:
    pass
print(f"receipts: {len(answer['receipts'])} inclusion proofs verified against a checkpoint of size "
      f"{size} signed by {vkey.split('+')[0]}")
