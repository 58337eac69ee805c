//! Who holds the log key. [`LogSigner`] is what the ledger asks for every signature; two
//! implementations:
//! - [`KeyFile`]: the key in `system/log.key`, in this process (the embedded default);
//! - [`SocketSigner`]: a separate `agentrail signer` process ([`SignerService`]) on a Unix
//!   socket, holding the key where the data directory's owner cannot read it. It keeps its own
//!   durable record of the newest tree it signed per origin and signs a checkpoint only with a
//!   consistency proof to that tree, so whoever takes the data directory cannot have a forged or
//!   cut history signed: no two inconsistent checkpoints for one origin, ever.
//!
//! The wire protocol is this project's own (hand-written: there is no standard for it): one
//! JSON object per line each way over a stream socket.
//! - `{"op":"verifier"}` → `{"verifier":"<name>+<id>+<key>"}`
//! - `{"op":"checkpoint","text":"<checkpoint body>","proof_from":m,"proof":["<hex>",…]}` →
//!   `{"signature":"<base64 Ed25519>"}`, or `{"stale":{"size":s}}` when the signer's newest
//!   tree for that origin has size `s ≠ m` (the caller retries with a proof between `s` and its
//!   size, in whichever order the two come), or `{"error":"…"}`.
//! - `{"op":"statement","text":"<statement body>"}` → `{"signature":…}` for a statement whose
//!   first line is `<name>/tenants/<tenant>/<kind>` (never a checkpoint's origin line).

use crate::ledger::STATEMENT_KINDS;
use crate::treerecord::{Refused, TreeRecord, consistent};
use agentrail_event::TenantId;
use agentrail_event::hash::{from_hex, to_hex};
use agentrail_merkle::Hash;
use agentrail_note::{Checkpoint, NoteSignature, Signer, Verifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A consistency proof between the size of the tree being signed and another size `m` of the
/// same tree (from `min` to `max` of the two), as RFC 6962 hashes.
pub type Prove<'a> = &'a dyn Fn(u64) -> Result<Vec<Hash>, String>;

/// Makes the log's signatures.
pub trait LogSigner: Send + Sync + std::fmt::Debug {
    fn verifier(&self) -> &Verifier;
    /// Signs a checkpoint body (`Checkpoint::to_text`); `prove` answers for any other size of
    /// the same tree at most the durable size.
    fn sign_checkpoint(&self, text: &str, prove: Prove<'_>) -> Result<NoteSignature, String>;
    /// Signs a statement body (see `Ledger::sign_statement`).
    fn sign_statement(&self, text: &str) -> Result<NoteSignature, String>;
}

/// The key in this process.
#[derive(Debug)]
pub struct KeyFile {
    key: Signer,
    verifier: Verifier,
}

impl KeyFile {
    pub fn new(key: Signer) -> KeyFile {
        KeyFile {
            verifier: key.verifier(),
            key,
        }
    }
}

impl LogSigner for KeyFile {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
    fn sign_checkpoint(&self, text: &str, _: Prove<'_>) -> Result<NoteSignature, String> {
        Ok(self.key.sign(text))
    }
    fn sign_statement(&self, text: &str) -> Result<NoteSignature, String> {
        Ok(self.key.sign(text))
    }
}

/// No key at hand (an offline reader of a directory whose key a signer holds): refuses.
#[derive(Debug)]
pub struct Refuse(pub Verifier);

impl LogSigner for Refuse {
    fn verifier(&self) -> &Verifier {
        &self.0
    }
    fn sign_checkpoint(&self, _: &str, _: Prove<'_>) -> Result<NoteSignature, String> {
        Err("the log key is held by an external signer; pass --signer".into())
    }
    fn sign_statement(&self, _: &str) -> Result<NoteSignature, String> {
        Err("the log key is held by an external signer; pass --signer".into())
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Verifier,
    Checkpoint {
        text: String,
        proof_from: u64,
        proof: Vec<String>,
    },
    Statement {
        text: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale: Option<Stale>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stale {
    size: u64,
}

/// The client side: one connection, re-opened after a failure.
#[derive(Debug)]
pub struct SocketSigner {
    path: PathBuf,
    verifier: Verifier,
    conn: Mutex<Option<BufReader<UnixStream>>>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(path: &Path) -> Result<BufReader<UnixStream>, String> {
    let s = UnixStream::connect(path)
        .map_err(|e| format!("connecting to the signer at {}: {e}", path.display()))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(BufReader::new(s))
}

fn exchange(conn: &mut BufReader<UnixStream>, req: &Request) -> std::io::Result<Response> {
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    conn.get_mut().write_all(line.as_bytes())?;
    let mut answer = String::new();
    if conn.read_line(&mut answer)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the signer closed the connection",
        ));
    }
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

impl SocketSigner {
    /// Connects and asks the signer for its verifier key.
    pub fn connect(path: &Path) -> Result<SocketSigner, String> {
        let mut conn = connect(path)?;
        let r = exchange(&mut conn, &Request::Verifier)
            .map_err(|e| format!("asking the signer at {} for its key: {e}", path.display()))?;
        let verifier: Verifier = r
            .verifier
            .ok_or_else(|| format!("the signer at {} sent no key", path.display()))?
            .parse()
            .map_err(|e| format!("the signer's key: {e}"))?;
        Ok(SocketSigner {
            path: path.to_path_buf(),
            verifier,
            conn: Mutex::new(Some(conn)),
        })
    }

    fn call(&self, req: &Request) -> Result<Response, String> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // One retry on a fresh connection: the signer may have restarted since.
        for attempt in 0..2 {
            let conn = match guard.as_mut() {
                Some(c) => c,
                None => guard.insert(connect(&self.path)?),
            };
            match exchange(conn, req) {
                Ok(r) => return Ok(r),
                Err(e) => {
                    *guard = None;
                    if attempt == 1 {
                        return Err(format!("the signer at {}: {e}", self.path.display()));
                    }
                }
            }
        }
        unreachable!()
    }

    fn signature(&self, text: &str, r: Response) -> Result<NoteSignature, String> {
        if let Some(e) = r.error {
            return Err(format!("the signer refused: {e}"));
        }
        let sig = r
            .signature
            .ok_or("the signer sent no signature")
            .and_then(|s| {
                STANDARD
                    .decode(s)
                    .map_err(|_| "the signer's signature is not base64")
            })?;
        let sig = NoteSignature {
            name: self.verifier.name().to_owned(),
            key_id: self.verifier.key_id(),
            sig,
        };
        // Never hand out what does not verify.
        self.verifier
            .verify(text, &sig)
            .map_err(|e| format!("the signer's signature does not verify: {e}"))?;
        Ok(sig)
    }
}

impl LogSigner for SocketSigner {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn sign_checkpoint(&self, text: &str, prove: Prove<'_>) -> Result<NoteSignature, String> {
        let size = Checkpoint::parse_text(text)
            .map_err(|e| format!("not a checkpoint: {e}"))?
            .size;
        // First guess: the signer last signed this size (a re-sign) — then a fresh guess from
        // its answer. Concurrent signers of one origin may move it between calls: a few tries.
        let mut from = size;
        for _ in 0..4 {
            let proof = prove(from)?.iter().map(to_hex).collect();
            let r = self.call(&Request::Checkpoint {
                text: text.to_owned(),
                proof_from: from,
                proof,
            })?;
            if let Some(s) = &r.stale {
                from = s.size;
                continue;
            }
            return self.signature(text, r);
        }
        Err("the signer's tree kept moving; try again".into())
    }

    fn sign_statement(&self, text: &str) -> Result<NoteSignature, String> {
        let r = self.call(&Request::Statement {
            text: text.to_owned(),
        })?;
        self.signature(text, r)
    }
}

/// The `agentrail signer` process: the key, and the record of the newest tree it signed per
/// origin ([`TreeRecord`]).
#[derive(Debug)]
pub struct SignerService {
    key: Box<dyn LogSigner>,
    record: TreeRecord,
}

impl SignerService {
    /// Opens (creating) the record at `path`.
    pub fn open(key: Box<dyn LogSigner>, path: &Path) -> Result<SignerService, String> {
        Ok(SignerService {
            key,
            record: TreeRecord::open(path)?,
        })
    }

    /// The newest tree signed for `origin`.
    pub fn signed(&self, origin: &str) -> Option<(u64, Hash)> {
        self.record.latest(origin)
    }

    fn checkpoint(&self, text: &str, from: u64, proof: &[String]) -> Response {
        let refuse = |e: String| Response {
            error: Some(e),
            ..Response::default()
        };
        let cp = match Checkpoint::parse_text(text) {
            Ok(c) if c.to_text() == text => c,
            Ok(_) => return refuse("the checkpoint is not in canonical form".into()),
            Err(e) => return refuse(format!("not a checkpoint: {e}")),
        };
        let name = self.key.verifier().name();
        let tenant = cp
            .origin
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix("/tenants/"))
            .filter(|t| TenantId::parse(t).is_ok());
        if tenant.is_none() {
            return refuse(format!("origin {:?} is not a tenant of {name}", cp.origin));
        }
        let Some(proof) = proof
            .iter()
            .map(|h| from_hex(h))
            .collect::<Option<Vec<_>>>()
        else {
            return refuse("a proof hash is not hex".into());
        };
        enum No {
            Stale(u64),
            Fork(String),
        }
        let advanced = self.record.advance(&cp.origin, cp.size, cp.root, |signed| {
            let Some((size, root)) = signed else {
                return Ok(());
            };
            if from != size {
                return Err(No::Stale(size));
            }
            let ok = if cp.size >= size {
                consistent(size, &root, cp.size, &cp.root, &proof)
            } else {
                consistent(cp.size, &cp.root, size, &root, &proof)
            };
            ok.map_err(|e| {
                tracing::error!(origin = %cp.origin, signed = size, asked = cp.size,
                    "refused to sign a tree inconsistent with the one already signed");
                No::Fork(format!(
                    "the tree of size {} is not consistent with the tree of size {size} already signed for {}: {e}",
                    cp.size, cp.origin
                ))
            })
        });
        match advanced {
            Ok(()) => {}
            Err(Refused::Check(No::Stale(size))) => {
                return Response {
                    stale: Some(Stale { size }),
                    ..Response::default()
                };
            }
            Err(Refused::Check(No::Fork(e)) | Refused::Io(e)) => return refuse(e),
        }
        self.sig(text)
    }

    fn sig(&self, text: &str) -> Response {
        // The key signs what this service decided to sign; its own checks are this service's.
        match self.key.sign_statement(text) {
            Ok(s) => Response {
                signature: Some(STANDARD.encode(s.sig)),
                ..Response::default()
            },
            Err(e) => Response {
                error: Some(e),
                ..Response::default()
            },
        }
    }

    fn statement(&self, text: &str) -> Response {
        let first = text.lines().next().unwrap_or("");
        let ok = first
            .strip_prefix(self.key.verifier().name())
            .and_then(|r| r.strip_prefix("/tenants/"))
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(t, kind)| TenantId::parse(t).is_ok() && STATEMENT_KINDS.contains(&kind));
        if !ok || agentrail_note::Note::new(text).is_err() {
            return Response {
                error: Some(format!(
                    "not a statement: its first line must be {}/tenants/<tenant>/<{}>",
                    self.key.verifier().name(),
                    STATEMENT_KINDS.join("|")
                )),
                ..Response::default()
            };
        }
        self.sig(text)
    }

    /// Answers one request line.
    pub fn handle(&self, line: &str) -> String {
        let r = match serde_json::from_str::<Request>(line) {
            Ok(Request::Verifier) => Response {
                verifier: Some(self.key.verifier().to_string()),
                ..Response::default()
            },
            Ok(Request::Checkpoint {
                text,
                proof_from,
                proof,
            }) => self.checkpoint(&text, proof_from, &proof),
            Ok(Request::Statement { text }) => self.statement(&text),
            Err(e) => Response {
                error: Some(format!("bad request: {e}")),
                ..Response::default()
            },
        };
        // A response of strings and numbers always serializes; never panic a signer over it.
        let mut s = serde_json::to_string(&r)
            .unwrap_or_else(|_| r#"{"error":"unserializable response"}"#.to_owned());
        s.push('\n');
        s
    }

    /// Serves connections until the listener fails: a thread each.
    pub fn serve(self: std::sync::Arc<Self>, listener: UnixListener) -> std::io::Result<()> {
        for conn in listener.incoming() {
            let conn = conn?;
            let me = self.clone();
            std::thread::spawn(move || {
                let mut out = match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                };
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { return };
                    if out.write_all(me.handle(&line).as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
        Ok(())
    }
}
