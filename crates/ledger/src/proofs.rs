//! Inclusion and consistency proofs of a tenant's tree packaged for clients: the proof hashes
//! with the sizes, roots and the signed checkpoint they lead to, as JSON (hex) and as
//! c2sp.org/tlog-proof@v1 text. Shared by the CLI (offline) and the HTTP API.

use crate::error::ReadError;
use crate::ledger::Ledger;
use crate::tenant::SignedCheckpoint;
use agentrail_event::TenantId;
use agentrail_event::hash::to_hex;
use agentrail_merkle::Hash;
use agentrail_note::TlogProof;
use serde_json::{Value, json};

/// An inclusion proof of one event in the tree of `tree_size`, checked before it is returned.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub tenant: TenantId,
    pub seq: u64,
    pub tree_size: u64,
    pub event_hash: Hash,
    pub leaf_hash: Hash,
    pub root: Hash,
    pub proof: Vec<Hash>,
    /// The signed checkpoint, when the proof is at its size.
    pub checkpoint: Option<String>,
}

/// A consistency proof between two tree sizes.
#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    pub tenant: TenantId,
    pub from: u64,
    pub to: u64,
    pub root_from: Hash,
    pub root_to: Hash,
    pub proof: Vec<Hash>,
    pub checkpoint: Option<String>,
}

/// Why a proof could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("the proof does not verify against the tree: {0}")]
    DoesNotVerify(String),
    #[error(
        "tlog-proof text needs the proof at the checkpoint's size {checkpoint_size}; ask for JSON for size {size}"
    )]
    NotAtCheckpoint { size: u64, checkpoint_size: u64 },
}

/// Inclusion proof of `seq` at `size` (default: the checkpoint's size).
pub fn inclusion(
    ledger: &Ledger,
    tenant: &TenantId,
    cp: &SignedCheckpoint,
    seq: u64,
    size: Option<u64>,
) -> Result<InclusionProof, ProofError> {
    let size = size.unwrap_or(cp.size);
    let proof = ledger.inclusion_proof(tenant, seq, size)?;
    let event = ledger.read(tenant, seq)?;
    let leaf = agentrail_merkle::leaf_hash(&event.bytes);
    let root = ledger.root_at(tenant, size)?;
    agentrail_merkle::verify_inclusion(seq, size, &leaf, &proof, &root)
        .map_err(|e| ProofError::DoesNotVerify(e.to_string()))?;
    Ok(InclusionProof {
        tenant: tenant.clone(),
        seq,
        tree_size: size,
        event_hash: event.hash,
        leaf_hash: leaf,
        root,
        proof,
        checkpoint: (size == cp.size).then(|| cp.text.clone()),
    })
}

/// Consistency proof from `from` to `to` (default: the checkpoint's size).
pub fn consistency(
    ledger: &Ledger,
    tenant: &TenantId,
    cp: &SignedCheckpoint,
    from: u64,
    to: Option<u64>,
) -> Result<ConsistencyProof, ProofError> {
    let to = to.unwrap_or(cp.size);
    let proof = ledger.consistency_proof(tenant, from, to)?;
    let (root_from, root_to) = (ledger.root_at(tenant, from)?, ledger.root_at(tenant, to)?);
    agentrail_merkle::verify_consistency(from, to, &root_from, &root_to, &proof)
        .map_err(|e| ProofError::DoesNotVerify(e.to_string()))?;
    Ok(ConsistencyProof {
        tenant: tenant.clone(),
        from,
        to,
        root_from,
        root_to,
        proof,
        checkpoint: (to == cp.size).then(|| cp.text.clone()),
    })
}

fn hexes(v: &[Hash]) -> Vec<String> {
    v.iter().map(to_hex).collect()
}

impl InclusionProof {
    pub fn to_json(&self) -> Value {
        json!({
            "tenant": self.tenant.as_str(),
            "seq": self.seq,
            "tree_size": self.tree_size,
            "event_hash": to_hex(&self.event_hash),
            "leaf_hash": to_hex(&self.leaf_hash),
            "root": to_hex(&self.root),
            "proof": hexes(&self.proof),
            "checkpoint": self.checkpoint,
        })
    }

    /// c2sp.org/tlog-proof@v1; only at the checkpoint's size.
    pub fn to_tlog_text(&self, cp: &SignedCheckpoint) -> Result<String, ProofError> {
        let Some(checkpoint) = &self.checkpoint else {
            return Err(ProofError::NotAtCheckpoint {
                size: self.tree_size,
                checkpoint_size: cp.size,
            });
        };
        Ok(TlogProof {
            extra: None,
            index: self.seq,
            hashes: self.proof.clone(),
            checkpoint: checkpoint.clone(),
        }
        .to_text())
    }
}

impl ConsistencyProof {
    pub fn to_json(&self) -> Value {
        json!({
            "tenant": self.tenant.as_str(),
            "from": self.from,
            "to": self.to,
            "root_from": to_hex(&self.root_from),
            "root_to": to_hex(&self.root_to),
            "proof": hexes(&self.proof),
            "checkpoint": self.checkpoint,
        })
    }

    /// The proof hashes in base64, one per line (the body of a tlog consistency proof).
    pub fn to_text(&self) -> String {
        use base64::Engine;
        let mut out = String::new();
        for h in &self.proof {
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(h));
            out.push('\n');
        }
        out
    }
}
