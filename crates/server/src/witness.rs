//! `agentrail witness`: a C2SP tlog-witness (v1.0.0) for agentrail logs. `POST /add-checkpoint`
//! takes `old <size>`, a consistency proof and a signed checkpoint; the witness cosigns
//! (cosignature/v1) only a tree consistent with the newest it cosigned for that origin, recorded
//! durably first ([`agentrail_ledger::treerecord`]), so a log that forks its history or shows two
//! views cannot get both cosigned. Run it on another host, or in another trust domain.
//!
//! Known logs are given by verifier key. agentrail keeps one tree per tenant, with origins
//! `<key name>/tenants/<tenant>`: a log key vouches for every origin of that shape (a standard
//! witness lists origins one by one; here they appear as tenants are created).

use agentrail_event::TenantId;
use agentrail_ledger::treerecord::{Refused, TreeRecord, consistent};
use agentrail_note::{Checkpoint, Cosigner, Note, Verifier, open_checkpoint};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

/// The witness: its cosigning key, the logs it knows, its record.
#[derive(Debug)]
pub struct Witness {
    key: Cosigner,
    logs: Vec<Verifier>,
    record: TreeRecord,
}

/// An answer of the protocol: status, content type, body.
pub type Answer = (StatusCode, &'static str, String);

fn plain(status: StatusCode, body: impl Into<String>) -> Answer {
    (status, "text/plain; charset=utf-8", body.into())
}

/// The largest request body: 63 proof lines, a checkpoint and its signatures.
const MAX_BODY: usize = 64 * 1024;

impl Witness {
    pub fn new(key: Cosigner, logs: Vec<Verifier>, record: TreeRecord) -> Witness {
        Witness { key, logs, record }
    }

    pub fn verifier(&self) -> Verifier {
        self.key.verifier()
    }

    /// The log key an origin belongs to.
    fn log_of(&self, origin: &str) -> Option<&Verifier> {
        self.logs.iter().find(|v| {
            origin
                .strip_prefix(v.name())
                .and_then(|r| r.strip_prefix("/tenants/"))
                .is_some_and(|t| TenantId::parse(t).is_ok())
        })
    }

    /// Handles one `add-checkpoint` body at time `now` (seconds since the epoch).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Answer {
        let bad = |why: &str| plain(StatusCode::BAD_REQUEST, format!("{why}\n"));
        let Ok(text) = std::str::from_utf8(body) else {
            return bad("the body is not UTF-8");
        };
        let Some((head, signed)) = text.split_once("\n\n") else {
            return bad("no blank line between the proof and the checkpoint");
        };
        let mut lines = head.split('\n');
        let Some(old) = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return bad("the first line must be \"old <size>\"");
        };
        let mut proof = Vec::new();
        for l in lines {
            match STANDARD
                .decode(l)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(h) if proof.len() < 63 => proof.push(h),
                Some(_) => return bad("more than 63 proof lines"),
                None => return bad(&format!("proof line {l:?} is not a base64 SHA-256 hash")),
            }
        }
        let note = match Note::parse(signed.as_bytes()) {
            Ok(n) => n,
            Err(e) => return bad(&format!("not a signed note: {e}")),
        };
        let cp = match Checkpoint::parse_text(&note.text) {
            Ok(c) => c,
            Err(e) => return bad(&format!("not a checkpoint: {e}")),
        };
        let Some(log) = self.log_of(&cp.origin) else {
            return plain(
                StatusCode::NOT_FOUND,
                format!("unknown log origin {:?}\n", cp.origin),
            );
        };
        if let Err(e) = open_checkpoint(signed.as_bytes(), log, &[]) {
            return plain(StatusCode::FORBIDDEN, format!("{e}\n"));
        }
        if old > cp.size {
            return bad(&format!(
                "old size {old} is larger than the checkpoint's {}",
                cp.size
            ));
        }
        enum No {
            Conflict(u64),
            Proof(String),
        }
        let r = self.record.advance(&cp.origin, cp.size, cp.root, |latest| {
            let (size, root) = latest.unwrap_or((0, agentrail_merkle::EMPTY_ROOT));
            if old != size {
                return Err(No::Conflict(size));
            }
            consistent(size, &root, cp.size, &cp.root, &proof).map_err(No::Proof)
        });
        match r {
            Ok(()) => {}
            Err(Refused::Check(No::Conflict(size))) => {
                return (
                    StatusCode::CONFLICT,
                    "text/x.tlog.size",
                    format!("{size}\n"),
                );
            }
            Err(Refused::Check(No::Proof(e))) => {
                tracing::warn!(origin = %cp.origin, old, size = cp.size, error = %e,
                    "refused a checkpoint inconsistent with the one cosigned");
                return plain(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("not consistent with the tree of size {old} cosigned: {e}\n"),
                );
            }
            Err(Refused::Io(e)) => {
                tracing::error!(error = %e, "cannot record a cosigned tree");
                return plain(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"));
            }
        }
        plain(StatusCode::OK, self.key.cosign(&note.text, now).to_line())
    }
}

fn respond((status, ctype, body): Answer) -> Response {
    (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    if body.len() > MAX_BODY {
        return respond(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // The record's fsync blocks: off the async workers.
    let answer = tokio::task::spawn_blocking(move || w.add_checkpoint(&body, now)).await;
    respond(
        answer.unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "the witness failed\n")),
    )
}

/// The witness's HTTP API: `POST /add-checkpoint`.
pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state(w)
}

/// Serves the witness on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    w: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(w))
        .with_graceful_shutdown(shutdown)
        .await
}
