//! Submitting checkpoints to C2SP tlog-witnesses (v1.0.0, `POST <url>/add-checkpoint`): every
//! interval, each tenant's newest logged checkpoint goes to each configured witness with a
//! consistency proof from the size that witness last cosigned (learnt from its 409 answer when
//! not known). Cosignatures are checked with the witness's key, and the newest checkpoint with
//! every cosignature gathered so far is kept in `tenants/<t>/witnessed` (replaced atomically),
//! served as `GET …/checkpoint?cosigned=true`. A witness that is down or refuses is logged and
//! counted; ingest is never held up by it.

use crate::error::ServiceError;
use crate::schedule::Schedule;
use agentrail_event::TenantId;
use agentrail_ledger::sync::lock;
use agentrail_ledger::{DataDir, Ledger, SignedCheckpoint};
use agentrail_note::{Note, NoteSignature, Verifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One witness: where it listens and its cosignature/v1 verifier key.
#[derive(Debug, Clone)]
pub struct Witness {
    pub url: String,
    pub key: Verifier,
}

const WITNESSED: &str = "witnessed";

#[derive(Debug)]
pub struct Witnesses {
    ledger: Arc<Ledger>,
    layout: DataDir,
    list: Vec<Witness>,
    /// Per (witness, tenant): the size it last cosigned, as far as this process knows.
    known: Mutex<HashMap<(usize, TenantId), u64>>,
    agent: ureq::Agent,
    schedule: Schedule,
    pub failures: AtomicU64,
}

/// Why a witness gave no cosignature.
enum NoCosignature {
    /// It could not or would not answer now (down, a bad answer): tried again later.
    Failed(String),
    /// It holds a tree this log's records do not extend.
    Evidence(String),
}

fn parse_size(body: &str) -> Option<u64> {
    body.trim_end_matches('\n').parse().ok()
}

impl Witnesses {
    pub fn new(ledger: Arc<Ledger>, layout: DataDir, list: Vec<Witness>) -> Witnesses {
        Witnesses {
            ledger,
            layout,
            list,
            known: Mutex::new(HashMap::new()),
            agent: ureq::Agent::config_builder()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .build()
                .into(),
            schedule: Schedule::default(),
            failures: AtomicU64::new(0),
        }
    }

    pub fn start_schedule(self: &Arc<Self>, every: Duration) {
        if self.list.is_empty() {
            return;
        }
        self.schedule.start_per_tenant(
            "witnesses",
            every,
            Arc::downgrade(self),
            |j| &j.ledger,
            |j, t| j.run(t),
        );
    }

    pub fn stop(&self) {
        self.schedule.stop();
    }

    /// The newest checkpoint of `tenant` with the cosignatures gathered for it.
    pub fn cosigned(&self, tenant: &TenantId) -> Result<Option<String>, ServiceError> {
        let path = self.layout.tenant(tenant).dir().join(WITNESSED);
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ServiceError::internal(format!(
                "reading {}: {e}",
                path.display()
            ))),
        }
    }

    /// Submits the tenant's newest checkpoint to every witness that has not cosigned it.
    pub fn run(&self, tenant: &TenantId) -> Result<(), ServiceError> {
        let Some(cp) = self.ledger.latest_checkpoint(tenant)? else {
            return Ok(());
        };
        let kept = self
            .cosigned(tenant)?
            .and_then(|t| Note::parse(t.as_bytes()).ok());
        let mut sigs: Vec<NoteSignature> = Vec::new();
        let mut changed = false;
        let cp_note = Note::parse(cp.text.as_bytes())
            .map_err(|e| ServiceError::internal(format!("the logged checkpoint: {e}")))?;
        for (i, w) in self.list.iter().enumerate() {
            // Already cosigned this very checkpoint: keep it.
            if let Some(k) = &kept
                && k.text == cp_note.text
                && let Some(s) = k.signatures.iter().find(|s| w.key.matches(s))
            {
                sigs.push(s.clone());
                continue;
            }
            match self.submit(i, w, tenant, &cp) {
                Ok(sig) => {
                    sigs.push(sig);
                    changed = true;
                }
                Err(NoCosignature::Failed(e)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(tenant = %tenant, witness = %w.url, error = %e,
                        "no cosignature");
                }
                Err(NoCosignature::Evidence(reason)) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    let damage = agentrail_ledger::Damage {
                        tenant: tenant.to_string(),
                        file: format!("witness {}", w.url),
                        offset: None,
                        seq: None,
                        reason,
                    };
                    self.ledger.refuse(tenant, damage.clone());
                    return Err(agentrail_ledger::OpenError::Damaged(damage).into());
                }
            }
        }
        if changed {
            let mut note = cp_note;
            note.signatures.extend(sigs);
            let path = self.layout.tenant(tenant).dir().join(WITNESSED);
            agentrail_ledger::files::write_atomic(&path, note.to_text().as_bytes(), 0o644)
                .map_err(|e| {
                    ServiceError::internal(format!("writing {}: {}", path.display(), e.source))
                })?;
        }
        Ok(())
    }

    fn submit(
        &self,
        i: usize,
        w: &Witness,
        tenant: &TenantId,
        cp: &SignedCheckpoint,
    ) -> Result<NoteSignature, NoCosignature> {
        use NoCosignature::{Evidence, Failed};
        let mut old = lock(&self.known)
            .get(&(i, tenant.clone()))
            .copied()
            .unwrap_or(0);
        // A second try after a 409 names the size the witness holds.
        for _ in 0..2 {
            if old > cp.size {
                return Err(Evidence(format!(
                    "the witness cosigned a tree of {old} events; the log's newest checkpoint has {}: events it saw were cut",
                    cp.size
                )));
            }
            let proof = if old == 0 || old == cp.size {
                Vec::new()
            } else {
                self.ledger
                    .consistency_proof(tenant, old, cp.size)
                    .map_err(|e| Failed(e.to_string()))?
            };
            let mut body = format!("old {old}\n");
            for h in &proof {
                body.push_str(&STANDARD.encode(h));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(&cp.text);
            let url = format!("{}/add-checkpoint", w.url.trim_end_matches('/'));
            let mut r = self
                .agent
                .post(&url)
                .header("Content-Type", "text/plain; charset=utf-8")
                .send(body.as_bytes())
                .map_err(|e| Failed(format!("{url}: {e}")))?;
            let status = r.status().as_u16();
            let text = r
                .body_mut()
                .read_to_string()
                .map_err(|e| Failed(format!("{url}: {e}")))?;
            match status {
                200 => {
                    // The answer's lines are signature lines of the same note.
                    let joined =
                        Note::parse(format!("{}{text}", cp.text).as_bytes()).map_err(|e| {
                            Failed(format!("{url}: not cosignature lines ({e}): {text:?}"))
                        })?;
                    let sig = joined
                        .signatures
                        .iter()
                        .find(|s| w.key.matches(s))
                        .cloned()
                        .ok_or_else(|| {
                            Failed(format!("{url}: no cosignature by {} in {text:?}", w.key))
                        })?;
                    w.key.verify(&joined.text, &sig).map_err(|e| {
                        Failed(format!("{url}: the cosignature does not verify: {e}"))
                    })?;
                    lock(&self.known).insert((i, tenant.clone()), cp.size);
                    return Ok(sig);
                }
                409 => {
                    old = parse_size(&text)
                        .ok_or_else(|| Failed(format!("{url}: 409 without a size: {text:?}")))?;
                    lock(&self.known).insert((i, tenant.clone()), old);
                }
                // The proof (checked before it was sent) does not take the witness's tree to
                // ours: the records it cosigned are not the ones this tree holds.
                422 => {
                    return Err(Evidence(format!(
                        "the witness refused the log's tree of {} events as inconsistent with the tree of {old} it cosigned: {}",
                        cp.size,
                        text.trim_end()
                    )));
                }
                s => return Err(Failed(format!("{url}: {s} {}", text.trim_end()))),
            }
        }
        Err(Failed("the witness's size kept changing".into()))
    }
}
