#!/usr/bin/env python3
"""Generates testdata/merkle/{inclusion,consistency}.json: RFC 6962 / RFC 9162 proof probes.

Self-contained (Python 3 standard library only: hashlib, base64, json) and independent of the
Rust code in crates/merkle: tree hashes follow RFC 6962 section 2.1 (recursive MTH), proofs are
built with the recursive PATH / PROOF / SUBPROOF definitions of RFC 9162 section 2.1.3.1 /
2.1.4.1, and every probe's `wantErr` is decided by the verification algorithms of RFC 9162
section 2.1.3.2 / 2.1.4.2, written out step by step as the RFC words them.

Edge cases the RFC leaves open follow this project's verifier (crates/merkle, the same choices as
transparency-dev's proof.VerifyConsistency): a consistency check with size1 = 0 is an error, as
is size1 > size2; equal sizes need an empty proof and equal roots; an inclusion check needs
index < size. A hash that is not 32 bytes long (root, leaf hash or proof element) is an error.

Before writing anything the script checks its tree heads for sizes 0..8 of the 8 reference leaves
against the table in the steering repo's SPECS.md section 1.4 (copied below), and a few proofs
listed there; it stops with an error if any differs.

Usage:  python3 testdata/merkle/gen_merkle_vectors.py      (rewrites the two JSON files beside it)
"""

import base64
import hashlib
import json
import os
import sys

# The 8 reference leaves (SPECS.md section 1.4, transparency-dev's LeafInputs()).
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]

# Roots by tree size for those leaves (SPECS.md section 1.4).
EXPECTED_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# A few proofs listed in SPECS.md section 1.4: (index, size) -> path, (size1, size2) -> proof.
EXPECTED_INCLUSION = {
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
EXPECTED_CONSISTENCY = {
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}

MAX_SIZE = 70


def extra_leaf(i):
    """Leaves 8.. of the larger trees: defined here, not taken from anywhere."""
    return ("agentrail merkle test leaf %d" % i).encode()


LEAVES = REFERENCE_LEAVES + [extra_leaf(i) for i in range(len(REFERENCE_LEAVES), MAX_SIZE)]

# Larger trees: sizes around powers of two and a few others; indexes / first sizes sampled.
LARGE_SIZES = [9, 10, 11, 12, 13, 15, 16, 17, 20, 24, 31, 32, 33, 40, 47, 48, 55, 63, 64, 65, 70]


def sha256(b):
    return hashlib.sha256(b).digest()


# ---- RFC 6962 section 2.1: the Merkle Tree Hash -------------------------------------------------


def largest_power_of_two_below(n):
    """The largest power of two k with k < n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def leaf_hash(data):
    return sha256(b"\x00" + data)


def node_hash(left, right):
    return sha256(b"\x01" + left + right)


def mth(d):
    """MTH(D[n]) of a list of leaf inputs."""
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return leaf_hash(d[0])
    k = largest_power_of_two_below(n)
    return node_hash(mth(d[:k]), mth(d[k:]))


# ---- RFC 9162 section 2.1.3.1 / 2.1.4.1: generating proofs --------------------------------------


def path(m, d):
    """PATH(m, D[n]): the inclusion proof of leaf m, leaf sibling first."""
    n = len(d)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m, d):
    """PROOF(m, D[n]) for 0 < m < n."""
    return subproof(m, d, True)


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


# ---- RFC 9162 section 2.1.3.2 / 2.1.4.2: verifying proofs ---------------------------------------


def well_formed(*hashes):
    return all(isinstance(h, bytes) and len(h) == 32 for h in hashes)


def verify_inclusion(leaf_index, tree_size, leaf, inclusion_path, root_hash):
    if not well_formed(leaf, root_hash, *inclusion_path):
        return False
    # 1.
    if leaf_index >= tree_size:
        return False
    # 2., 3.
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    # 4.
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn & 1 == 1 or fn == sn:
            r = node_hash(p, r)
            if fn & 1 == 0:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    # 5.
    return sn == 0 and r == root_hash


def verify_consistency(first, second, first_hash, second_hash, consistency_path):
    if not well_formed(first_hash, second_hash, *consistency_path):
        return False
    # Edge cases (this project's policy, see the module docstring).
    if first > second or first == 0:
        return False
    if first == second:
        return not consistency_path and first_hash == second_hash
    # 1.
    if not consistency_path:
        return False
    path_ = list(consistency_path)
    # 2.
    if first & (first - 1) == 0:
        path_ = [first_hash] + path_
    # 3.
    fn, sn = first - 1, second - 1
    # 4.
    while fn & 1 == 1:
        fn >>= 1
        sn >>= 1
    # 5.
    fr = sr = path_[0]
    # 6.
    for c in path_[1:]:
        if sn == 0:
            return False
        if fn & 1 == 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if fn & 1 == 0:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    # 7.
    return fr == first_hash and sr == second_hash and sn == 0


# ---- probes -------------------------------------------------------------------------------------


def b64(b):
    return base64.b64encode(b).decode()


def flip(h, bit):
    b = bytearray(h)
    b[(bit // 8) % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


OTHER_HASH = sha256(b"agentrail: some other hash")


def fail(msg):
    sys.exit("gen_merkle_vectors.py: " + msg)


def check_reference():
    for n, want in enumerate(EXPECTED_ROOTS):
        got = mth(REFERENCE_LEAVES[:n]).hex()
        if got != want:
            fail("root of size %d is %s, SPECS.md section 1.4 says %s" % (n, got, want))
    for (m, n), want in EXPECTED_INCLUSION.items():
        got = [h.hex() for h in path(m, REFERENCE_LEAVES[:n])]
        if got != want:
            fail("inclusion proof (%d, %d) is %s, SPECS.md says %s" % (m, n, got, want))
    for (m, n), want in EXPECTED_CONSISTENCY.items():
        got = [h.hex() for h in proof(m, REFERENCE_LEAVES[:n])]
        if got != want:
            fail("consistency proof %d -> %d is %s, SPECS.md says %s" % (m, n, got, want))


ROOTS = [mth(LEAVES[:n]) for n in range(MAX_SIZE + 1)]


def inclusion_probe(idx, size, root, leaf, prf, desc, expect_err):
    want_err = not verify_inclusion(idx, size, leaf, prf, root)
    if expect_err is not None and want_err != expect_err:
        fail("inclusion probe %r (%d, %d): expected wantErr=%s" % (desc, idx, size, expect_err))
    if expect_err is None and not want_err:
        desc += "; still verifies (same proof shape for both)"
    return {
        "leafIdx": idx,
        "treeSize": size,
        "root": b64(root),
        "leafHash": b64(leaf),
        "proof": [b64(p) for p in prf],
        "desc": desc,
        "wantErr": want_err,
    }


def consistency_probe(size1, size2, root1, root2, prf, desc, expect_err):
    want_err = not verify_consistency(size1, size2, root1, root2, prf)
    if expect_err is not None and want_err != expect_err:
        fail("consistency probe %r (%d, %d): expected wantErr=%s" % (desc, size1, size2, expect_err))
    if expect_err is None and not want_err:
        desc += "; still verifies (same proof shape for both)"
    return {
        "size1": size1,
        "size2": size2,
        "root1": b64(root1),
        "root2": b64(root2),
        "proof": [b64(p) for p in prf],
        "desc": desc,
        "wantErr": want_err,
    }


# The valid probes that also get the negative variants: a sample of small pairs (every proof
# shape up to size 8: first and last leaves, powers of two, equal sizes) and of larger trees.
INCLUSION_NEGATIVES = {
    (0, 1), (0, 2), (1, 2), (2, 3), (0, 4), (3, 4), (1, 5), (4, 5), (5, 6), (2, 7), (6, 7),
    (0, 8), (5, 8), (7, 8), (0, 16), (8, 17), (16, 17), (11, 33), (31, 63), (63, 64), (69, 70),
}
CONSISTENCY_NEGATIVES = {
    (1, 1), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (1, 5), (2, 5), (4, 5), (3, 6), (5, 7),
    (6, 7), (1, 8), (4, 8), (6, 8), (7, 8), (8, 8), (7, 16), (8, 17), (16, 17), (31, 63),
    (8, 70), (35, 70),
}


def inclusion_cases():
    """(index, size, with_negatives): every pair up to size 8, then a sample of larger trees."""
    cases = [(i, n) for n in range(1, 9) for i in range(n)]
    for n in LARGE_SIZES:
        cases += [(i, n) for i in sorted({0, 1, n // 3, n // 2, n - 2, n - 1})]
    return [(i, n, (i, n) in INCLUSION_NEGATIVES) for i, n in cases]


def consistency_cases():
    """(size1, size2, with_negatives): every pair up to size 8, then a sample of larger trees."""
    cases = [(m, n) for n in range(1, 9) for m in range(1, n + 1)]
    for n in LARGE_SIZES:
        cases += [(m, n) for m in sorted({1, 2, 3, 7, 8, n // 2, n - 1, n} & set(range(1, n + 1)))]
    return [(m, n, (m, n) in CONSISTENCY_NEGATIVES) for m, n in cases]


def inclusion_probes():
    out = []
    for idx, size, negatives in inclusion_cases():
        d = LEAVES[:size]
        root, leaf, prf = ROOTS[size], leaf_hash(LEAVES[idx]), path(idx, d)
        tag = "index %d, size %d" % (idx, size)
        out.append(inclusion_probe(idx, size, root, leaf, prf, "happy path: " + tag, False))
        if not negatives:
            continue
        neg = []
        for j, p in enumerate(prf):
            bit = (31 * j + 7 * idx + size) % 256
            bad = prf[:j] + [flip(p, bit)] + prf[j + 1 :]
            neg.append((idx, size, root, leaf, bad, "proof element %d: bit %d flipped" % (j, bit), True))
        if prf:
            neg.append((idx, size, root, leaf, prf[:-1], "truncated proof", True))
            neg.append((idx, size, root, leaf, [], "empty proof", True))
            neg.append((idx, size, root, leaf, prf[1:], "first proof element dropped", True))
            neg.append((idx, size, root, leaf, prf[::-1], "proof reversed", len(prf) > 1 or None))
            neg.append((idx, size, root, leaf, prf[:-1] + [prf[-1] + b"\x00"], "last proof element 33 bytes long", True))
            neg.append((idx, size, root, leaf, [b"\x00" + prf[0]] + prf[1:], "first proof element 33 bytes long", True))
        neg.append((idx, size, root, leaf, prf + [OTHER_HASH], "extra proof element", True))
        neg.append((idx, size, root, leaf, [OTHER_HASH] + prf, "extra proof element in front", True))
        # Wrong index or size: decided by the verifier (a few of these still verify, e.g. index
        # 0 of size 7 with size 8 claimed: same path shape, same computed root).
        for wrong in sorted({idx + 1, idx - 1, idx ^ 2, idx ^ 1, size, size + 1} - {idx}):
            if wrong >= 0:
                neg.append((wrong, size, root, leaf, prf, "leaf index %d instead of %d" % (wrong, idx), None))
        for wrong in sorted({size + 1, size - 1, size * 2, size // 2, 0, idx} - {size}):
            neg.append((idx, wrong, root, leaf, prf, "tree size %d instead of %d" % (wrong, size), None))
        neg.append((idx, size, root, leaf_hash(LEAVES[idx] + b"!"), prf, "wrong leaf", True))
        neg.append((idx, size, root, sha256(LEAVES[idx]), prf, "SHA-256 of the leaf data without the 0x00 prefix", True))
        neg.append((idx, size, ROOTS[size - 1], leaf, prf, "root of the previous size", None))
        neg.append((idx, size, flip(root, idx + size), leaf, prf, "root with a bit flipped", True))
        neg.append((idx, size, sha256(b""), leaf, prf, "empty-tree root", True))
        neg.append((idx, size, root + b"\x00", leaf, prf, "trailing garbage after the root", True))
        neg.append((idx, size, b"\x00" + root[:-1], leaf, prf, "root shifted by a leading byte", True))
        neg.append((idx, size, root[:31], leaf, prf, "root truncated to 31 bytes", True))
        neg.append((idx, size, root, leaf + b"\x00", prf, "trailing garbage after the leaf hash", True))
        for i_, n_, r_, l_, p_, desc, expect in neg:
            out.append(inclusion_probe(i_, n_, r_, l_, p_, desc + " (" + tag + ")", expect))
    # Trees of size 0 and 1.
    e = sha256(b"")
    out.append(inclusion_probe(0, 0, e, leaf_hash(b""), [], "size 0: no leaf is included", True))
    out.append(inclusion_probe(0, 0, e, e, [], "size 0, the empty-tree root as the leaf", True))
    one = leaf_hash(LEAVES[0])
    out.append(inclusion_probe(0, 1, one, one, [], "size 1: the root is the leaf hash", False))
    out.append(inclusion_probe(0, 1, one, one, [one], "size 1 with a non-empty proof", True))
    out.append(inclusion_probe(1, 1, one, one, [], "size 1, index 1", True))
    out.append(inclusion_probe(0, 1, e, one, [], "size 1, empty-tree root", True))
    out.append(inclusion_probe(0, 1, one, e, [], "size 1, empty-tree hash as the leaf", True))
    big = (1 << 63) - 1
    out.append(inclusion_probe(big, big + 1, ROOTS[8], one, path(0, LEAVES[:8]), "huge index and size", True))
    return dedupe(out, ("leafIdx", "treeSize", "root", "leafHash", "proof"))


def consistency_probes():
    out = []
    for m, n, negatives in consistency_cases():
        r1, r2 = ROOTS[m], ROOTS[n]
        prf = proof(m, LEAVES[:n]) if m < n else []
        tag = "%d -> %d" % (m, n)
        out.append(consistency_probe(m, n, r1, r2, prf, "happy path: " + tag, False))
        if not negatives:
            continue
        neg = []
        for j, p in enumerate(prf):
            bit = (29 * j + 5 * m + n) % 256
            bad = prf[:j] + [flip(p, bit)] + prf[j + 1 :]
            neg.append((m, n, r1, r2, bad, "proof element %d: bit %d flipped" % (j, bit), True))
        if prf:
            neg.append((m, n, r1, r2, prf[:-1], "truncated proof", True))
            neg.append((m, n, r1, r2, [], "empty proof", True))
            neg.append((m, n, r1, r2, prf[1:], "first proof element dropped", True))
            neg.append((m, n, r1, r2, prf[:-1] + [prf[-1] + b"\x00"], "last proof element 33 bytes long", True))
            neg.append((m, n, r1, r2, [b"\x00" + prf[0]] + prf[1:], "first proof element 33 bytes long", True))
            neg.append((m, n, r1, r2, [r1] + prf, "root1 prepended to the proof", None))
        neg.append((m, n, r1, r2, prf + [OTHER_HASH], "extra proof element", True))
        if m != n:
            neg.append((m, n, r2, r1, prf, "swapped roots", True))
            neg.append((n, m, r2, r1, prf, "swapped sizes and roots (size1 > size2)", True))
            neg.append((n, m, r1, r2, prf, "swapped sizes (size1 > size2)", True))
        neg.append((0, n, sha256(b""), r2, prf, "size1 = 0 with the proof", True))
        neg.append((0, n, sha256(b""), r2, [], "size1 = 0, empty proof", True))
        for wrong in sorted({m + 1, m - 1, m ^ 1, m * 2} - {m, 0}):
            neg.append((wrong, n, r1, r2, prf, "size1 %d instead of %d" % (wrong, m), None))
        for wrong in sorted({n + 1, n - 1, n * 2, n ^ 1} - {n}):
            neg.append((m, wrong, r1, r2, prf, "size2 %d instead of %d" % (wrong, n), None))
        neg.append((m, n, flip(r1, m + n), r2, prf, "wrong root1 (a bit flipped)", True))
        neg.append((m, n, r1, flip(r2, 3 * m + n), prf, "wrong root2 (a bit flipped)", True))
        neg.append((m, n, r1, sha256(b""), prf, "empty-tree root as root2", True))
        neg.append((m, n, r1 + b"\x00", r2, prf, "trailing garbage after root1", True))
        neg.append((m, n, r1, r2 + b"\x00", prf, "trailing garbage after root2", True))
        neg.append((m, n, b"\x00" + r1[:-1], r2, prf, "root1 shifted by a leading byte", True))
        neg.append((m, n, r1, r2[:31], prf, "root2 truncated to 31 bytes", True))
        if m == n:
            neg.append((m, n, r1, r2, [OTHER_HASH], "equal sizes with a non-empty proof", True))
            neg.append((m, n, r1, r2, [r1], "equal sizes, the root as the proof", True))
        for s1, s2, a, b, p, desc, expect in neg:
            out.append(consistency_probe(s1, s2, a, b, p, desc + " (" + tag + ")", expect))
    e = sha256(b"")
    out.append(consistency_probe(0, 0, e, e, [], "sizes 0 -> 0, empty-tree roots", True))
    out.append(consistency_probe(0, 0, e, e, [e], "sizes 0 -> 0 with a non-empty proof", True))
    out.append(consistency_probe(0, 0, e, OTHER_HASH, [], "sizes 0 -> 0, different roots", True))
    out.append(consistency_probe(0, 1, e, ROOTS[1], [], "size1 = 0 -> 1, empty proof", True))
    out.append(consistency_probe(0, 1, e, ROOTS[1], [e], "size1 = 0 -> 1, empty-tree root as proof", True))
    out.append(consistency_probe(1, 0, ROOTS[1], e, [], "size1 1 > size2 0", True))
    out.append(consistency_probe(2, 1, ROOTS[2], ROOTS[1], [], "size1 2 > size2 1", True))
    out.append(consistency_probe(1, 1, ROOTS[1], OTHER_HASH, [], "sizes 1 -> 1, different roots", True))
    out.append(consistency_probe(1, 2, ROOTS[1], ROOTS[2], [], "sizes 1 -> 2, empty proof", True))
    big = (1 << 63) - 1
    out.append(consistency_probe(big - 1, big, ROOTS[6], ROOTS[8], proof(6, LEAVES[:8]), "huge sizes", True))
    return dedupe(out, ("size1", "size2", "root1", "root2", "proof"))


def dedupe(probes, fields):
    """Drops probes identical in every input field to an earlier one (keeps the first's desc)."""
    seen, out = set(), []
    for p in probes:
        key = json.dumps([p[f] for f in fields])
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def write(name, probes, about):
    text = "{\n"
    text += '"generator": "testdata/merkle/gen_merkle_vectors.py",\n'
    text += '"about": %s,\n' % json.dumps(about)
    text += '"leaves": %s,\n' % json.dumps([leaf.hex() for leaf in LEAVES])
    text += '"count": %d,\n' % len(probes)
    text += '"probes": [\n'
    text += ",\n".join(json.dumps(p, separators=(",", ":")) for p in probes)
    text += "\n]\n}\n"
    path_ = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    with open(path_, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    bad = sum(p["wantErr"] for p in probes)
    print("%s: %d probes (%d valid, %d wantErr), %d bytes" % (name, len(probes), len(probes) - bad, bad, len(text)))


def main():
    check_reference()
    if not INCLUSION_NEGATIVES <= {(i, n) for i, n, _ in inclusion_cases()}:
        fail("INCLUSION_NEGATIVES names a pair that has no valid probe")
    if not CONSISTENCY_NEGATIVES <= {(m, n) for m, n, _ in consistency_cases()}:
        fail("CONSISTENCY_NEGATIVES names a pair that has no valid probe")
    # The verifiers accept every generated proof and reject an arbitrary wrong one.
    for n in range(1, MAX_SIZE + 1):
        for m in range(n):
            if not verify_inclusion(m, n, leaf_hash(LEAVES[m]), path(m, LEAVES[:n]), ROOTS[n]):
                fail("inclusion proof (%d, %d) does not verify" % (m, n))
        for m in range(1, n):
            if not verify_consistency(m, n, ROOTS[m], ROOTS[n], proof(m, LEAVES[:n])):
                fail("consistency proof %d -> %d does not verify" % (m, n))
    write(
        "inclusion.json",
        inclusion_probes(),
        "RFC 9162 inclusion probes {leafIdx, treeSize, root, leafHash, proof[], desc, wantErr}; "
        "byte strings are base64; the tree of size n holds leaves[0..n] (hex).",
    )
    write(
        "consistency.json",
        consistency_probes(),
        "RFC 9162 consistency probes {size1, size2, root1, root2, proof[], desc, wantErr}; "
        "byte strings are base64; the tree of size n holds leaves[0..n] (hex).",
    )


if __name__ == "__main__":
    main()
