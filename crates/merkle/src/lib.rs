//! RFC 6962 / RFC 9162 Merkle tree math: leaf and node hashing, roots, inclusion and consistency
//! proofs (generation and verification), and a compact-range frontier for appending.
//!
//! Pure and tenant-agnostic: no I/O, no storage format. Proof generation reads *perfect subtree
//! hashes* through the [`NodeReader`] trait, so a store that keeps them (the ledger) proves in
//! O(log n) reads; [`MemoryTree`] is the in-memory store used by tests and small tools.
//!
//! Node addressing: node `(level, index)` is the root of the perfect subtree over leaves
//! `[index << level, (index + 1) << level)`; level 0 holds leaf hashes.
//!
//! ```
//! use agentrail_merkle::{MemoryTree, leaf_hash, verify_inclusion};
//! let mut tree = MemoryTree::new();
//! for d in [&b"a"[..], b"b", b"c"] { tree.push(leaf_hash(d)); }
//! let root = tree.root();
//! let proof = tree.inclusion_proof(1, 3).unwrap();
//! verify_inclusion(1, 3, &leaf_hash(b"b"), &proof, &root).unwrap();
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use sha2::{Digest, Sha256};
use std::convert::Infallible;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string (RFC 6962 §2.1; not 32 zero bytes).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// RFC 6962 §2.1: leaf hash = SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 §2.1: node hash = SHA-256(0x01 ‖ left ‖ right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Reads perfect subtree hashes. `node(level, index)` is only asked for subtrees that are
/// complete in the tree being proven.
pub trait NodeReader {
    type Error;
    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError<E> {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("cannot prove consistency from size {from} to size {to}")]
    BadSizes { from: u64, to: u64 },
    #[error("reading a tree node failed: {0}")]
    Read(E),
}

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error("computed root does not match the expected root")]
    RootMismatch,
    #[error("consistency from size {from} to smaller size {to} is impossible")]
    SizesDecrease { from: u64, to: u64 },
    #[error("a consistency proof from the empty tree is meaningless")]
    FromEmpty,
    #[error("equal tree sizes need an empty proof")]
    NonEmptyForEqualSizes,
    #[error("first root does not match the proof")]
    FirstRootMismatch,
    #[error("second root does not match the proof")]
    SecondRootMismatch,
}

fn bit_len(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// `(inner, border)` sizes of an inclusion path for `index` in a tree of `size`
/// (transparency-dev's decomposition, `decompInclProof` in
/// <https://github.com/transparency-dev/merkle/blob/main/proof/verify.go>).
fn decomp_incl_proof(index: u64, size: u64) -> (u32, u32) {
    let inner = bit_len(index ^ (size - 1));
    let border = (index >> inner).count_ones();
    (inner, border)
}

/// MTH of leaves `[begin, end)` where `begin` is a multiple of a power of two ≥ `end − begin`
/// (every range a proof needs has this shape): the fold of its perfect subtrees.
fn range_hash<R: NodeReader>(r: &R, begin: u64, end: u64) -> Result<Hash, R::Error> {
    debug_assert!(end > begin);
    // Perfect subtrees from the left, by the binary digits of the length, largest first.
    let mut parts: Vec<Hash> = Vec::with_capacity(64);
    let mut pos = begin;
    let len = end - begin;
    for level in (0..64u32).rev() {
        if len & (1u64 << level) != 0 {
            parts.push(r.node(level, pos >> level)?);
            pos += 1u64 << level;
        }
    }
    // Right-to-left fold of MTH(D[n]) = SHA-256(0x01 ‖ MTH(D[0:k]) ‖ MTH(D[k:n])), k the largest
    // power of two below n (RFC 6962 §2.1, RFC 9162 §2.1.1).
    let mut acc = parts.pop().unwrap_or(EMPTY_ROOT);
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// The root hash of the first `size` leaves.
pub fn root<R: NodeReader>(r: &R, size: u64) -> Result<Hash, R::Error> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    range_hash(r, 0, size)
}

/// Appends the inclusion path of node `(level, index)` in a tree of `size` leaves, where the
/// node's subtree is complete in that tree. Level 0 is the plain leaf inclusion proof.
fn node_path<R: NodeReader>(
    r: &R,
    level: u32,
    index: u64,
    size: u64,
    proof: &mut Vec<Hash>,
) -> Result<(), R::Error> {
    let last = (size - 1) >> level;
    let (inner, _) = decomp_incl_proof(index, last + 1);
    for i in 0..inner {
        let sib = (index >> i) ^ 1;
        let begin = sib << (i + level);
        let end = ((sib + 1) << (i + level)).min(size);
        proof.push(range_hash(r, begin, end)?);
    }
    let mut idx = index >> inner;
    let mut j = inner + level;
    while idx != 0 {
        if idx & 1 == 1 {
            proof.push(r.node(j, idx - 1)?);
        }
        idx >>= 1;
        j += 1;
    }
    Ok(())
}

/// RFC 6962 §2.1.1 inclusion proof of leaf `index` in the tree of `size` leaves, leaf first.
pub fn inclusion_proof<R: NodeReader>(
    r: &R,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut proof = Vec::with_capacity(64);
    node_path(r, 0, index, size, &mut proof).map_err(ProofError::Read)?;
    Ok(proof)
}

/// RFC 6962 §2.1.2 consistency proof from size `from` to size `to` (0 < from ≤ to).
pub fn consistency_proof<R: NodeReader>(
    r: &R,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProofError<R::Error>> {
    if from == 0 || from > to {
        return Err(ProofError::BadSizes { from, to });
    }
    let mut proof = Vec::with_capacity(64);
    if from == to {
        return Ok(proof);
    }
    // Iterative form of RFC 6962 §2.1.2 / RFC 9162 §2.1.4.1 (as transparency-dev's
    // `proof.Consistency`): start from the largest perfect subtree ending at `from`.
    let level = from.trailing_zeros();
    let index = (from - 1) >> level;
    if !from.is_power_of_two() {
        proof.push(r.node(level, index).map_err(ProofError::Read)?);
    }
    node_path(r, level, index, to, &mut proof).map_err(ProofError::Read)?;
    Ok(proof)
}

/// RFC 9162 §2.1.3.2: checks that `leaf` is at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    if &computed == root {
        Ok(())
    } else {
        Err(VerifyError::RootMismatch)
    }
}

/// The root implied by an inclusion proof (checking its length exactly).
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let (inner, border) = decomp_incl_proof(index, size);
    let expected = (inner + border) as usize;
    if proof.len() != expected {
        return Err(VerifyError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (inner_part, border_part) = proof.split_at(inner as usize);
    let mut r = *leaf;
    for (i, p) in inner_part.iter().enumerate() {
        r = if (index >> i) & 1 == 0 {
            node_hash(&r, p)
        } else {
            node_hash(p, &r)
        };
    }
    for p in border_part {
        r = node_hash(p, &r);
    }
    Ok(r)
}

/// RFC 9162 §2.1.4.2: checks that the tree of size `from` with `root1` is a prefix of the tree of
/// size `to` with `root2`. Edge cases follow transparency-dev's `proof.VerifyConsistency`
/// (<https://github.com/transparency-dev/merkle/blob/main/proof/verify.go>): `from == 0` is an
/// error, equal sizes need an empty proof and equal roots.
pub fn verify_consistency(
    from: u64,
    to: u64,
    root1: &Hash,
    root2: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyError> {
    if from > to {
        return Err(VerifyError::SizesDecrease { from, to });
    }
    if from == 0 {
        return Err(VerifyError::FromEmpty);
    }
    if from == to {
        if !proof.is_empty() {
            return Err(VerifyError::NonEmptyForEqualSizes);
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    // Expected length: the seed node (unless `from` is a power of two) plus its path.
    let level = from.trailing_zeros();
    let index = (from - 1) >> level;
    let (inner, border) = decomp_incl_proof(index, ((to - 1) >> level) + 1);
    let seed_len = usize::from(!from.is_power_of_two());
    let expected = seed_len + (inner + border) as usize;
    if proof.len() != expected {
        return Err(VerifyError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    let (seed, path) = if from.is_power_of_two() {
        (*root1, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // Walk the path twice: once rebuilding root1 (only the left siblings matter), once root2.
    let mask = (from - 1) >> level;
    let (inner_part, border_part) = path.split_at(inner as usize);
    let mut r1 = seed;
    let mut r2 = seed;
    for (i, p) in inner_part.iter().enumerate() {
        if (mask >> i) & 1 == 1 {
            r1 = node_hash(p, &r1);
            r2 = node_hash(p, &r2);
        } else {
            r2 = node_hash(&r2, p);
        }
    }
    for p in border_part {
        r1 = node_hash(p, &r1);
        r2 = node_hash(p, &r2);
    }
    if &r1 != root1 {
        return Err(VerifyError::FirstRootMismatch);
    }
    if &r2 != root2 {
        return Err(VerifyError::SecondRootMismatch);
    }
    Ok(())
}

/// The right border of a tree: the roots of its perfect subtrees, largest (leftmost) first.
/// Appending a leaf is O(log n) and yields the nodes it completes, which a store persists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// `(level, hash)` of each perfect subtree, from the left; levels strictly decrease.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored perfect nodes.
    pub fn from_reader<R: NodeReader>(r: &R, size: u64) -> Result<Frontier, R::Error> {
        let mut nodes = Vec::new();
        let mut pos = 0u64;
        for level in (0..64u32).rev() {
            if size & (1u64 << level) != 0 {
                nodes.push((level, r.node(level, pos >> level)?));
                pos += 1u64 << level;
            }
        }
        Ok(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The roots of the perfect subtrees, largest (leftmost) first: the compact range `[0, size)`.
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    /// The frontier of a tree of `size` leaves from [`Frontier::hashes`]; `None` when the number
    /// of hashes is not the number of perfect subtrees of `size` (one per set bit).
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Option<Frontier> {
        if hashes.len() != size.count_ones() as usize {
            return None;
        }
        let levels = (0..64u32).rev().filter(|l| size & (1u64 << l) != 0);
        Some(Frontier {
            size,
            nodes: levels.zip(hashes.iter().copied()).collect(),
        })
    }

    /// Appends a leaf hash; calls `completed(level, index, hash)` for every perfect subtree it
    /// completes, the leaf itself (level 0) first.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let index = self.size;
        completed(0, index, &leaf);
        let mut level = 0u32;
        let mut hash = leaf;
        while let Some(&(l, left)) = self.nodes.last() {
            if l != level {
                break;
            }
            self.nodes.pop();
            hash = node_hash(&left, &hash);
            level += 1;
            completed(level, index >> level, &hash);
        }
        self.nodes.push((level, hash));
        self.size += 1;
    }

    /// The root hash of the tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

/// A whole tree in memory: every perfect node, level by level.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    levels: Vec<Vec<Hash>>,
    frontier: Frontier,
}

impl MemoryTree {
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    pub fn push(&mut self, leaf: Hash) {
        let levels = &mut self.levels;
        self.frontier.push(leaf, |level, index, hash| {
            let level = level as usize;
            if levels.len() <= level {
                levels.push(Vec::new());
            }
            debug_assert_eq!(levels[level].len() as u64, index);
            levels[level].push(*hash);
        });
    }

    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The root at an earlier size.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError<Infallible>> {
        if size > self.size() {
            return Err(ProofError::BadSizes {
                from: size,
                to: self.size(),
            });
        }
        root(self, size).map_err(ProofError::Read)
    }

    pub fn inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, ProofError<Infallible>> {
        if size > self.size() {
            return Err(ProofError::IndexOutOfRange {
                index: size,
                size: self.size() + 1,
            });
        }
        inclusion_proof(self, index, size)
    }

    pub fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, ProofError<Infallible>> {
        if to > self.size() {
            return Err(ProofError::BadSizes { from, to });
        }
        consistency_proof(self, from, to)
    }
}

impl NodeReader for MemoryTree {
    type Error = Infallible;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Infallible> {
        // Callers only ask for complete subtrees of a size ≤ self.size(), which exist.
        Ok(self.levels[level as usize][index as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The 8 leaves of transparency-dev's test tree (`LeafInputs` in
    /// <https://github.com/transparency-dev/merkle/blob/main/testonly/constants.go>).
    fn example_tree() -> MemoryTree {
        let leaves: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        let mut t = MemoryTree::new();
        for l in leaves {
            t.push(leaf_hash(l));
        }
        t
    }

    fn check_proof(proof: &[Hash], expected: &[&str]) {
        let got: Vec<String> = proof.iter().map(hex).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn roots_of_the_example_tree() {
        let roots = [
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let t = example_tree();
        for (size, want) in roots.iter().enumerate() {
            assert_eq!(hex(&t.root_at(size as u64).unwrap()), *want, "size {size}");
        }
        assert_eq!(hex(&t.root()), roots[8]);
        assert_eq!(
            Frontier::from_reader(&t, 5).unwrap().root(),
            t.root_at(5).unwrap()
        );
    }

    #[test]
    fn proofs_of_the_example_tree() {
        let t = example_tree();
        check_proof(
            &t.inclusion_proof(0, 8).unwrap(),
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_proof(
            &t.inclusion_proof(5, 8).unwrap(),
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_proof(
            &t.inclusion_proof(2, 3).unwrap(),
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        );
        check_proof(
            &t.inclusion_proof(1, 5).unwrap(),
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );
        check_proof(
            &t.consistency_proof(1, 8).unwrap(),
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        );
        check_proof(
            &t.consistency_proof(6, 8).unwrap(),
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        check_proof(
            &t.consistency_proof(2, 5).unwrap(),
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        );
        check_proof(
            &t.consistency_proof(6, 7).unwrap(),
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        );
        assert!(t.consistency_proof(8, 8).unwrap().is_empty());
        assert_eq!(
            t.consistency_proof(0, 8),
            Err(ProofError::BadSizes { from: 0, to: 8 })
        );
        assert_eq!(
            t.inclusion_proof(8, 8),
            Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
        );
    }
}
