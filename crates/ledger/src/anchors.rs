//! What a tenant's signed checkpoint commits besides its events: the heads of the chain logs
//! that say who did what — the tenant's access log, retention runs, token vault and wrapped
//! keys, and the system's integrity reports and API keys — as C2SP checkpoint extension lines
//!
//! ```text
//! agentrail-log access 42 <hex SHA-256 of record 41>
//! ```
//!
//! (one per non-empty log). Whoever rewrites, truncates or deletes one of those logs without the
//! log key leaves a checkpoint whose line it no longer holds: the tenant is refused at open and
//! `agentrail verify` fails it, naming the log. Records appended after the newest checkpoint are
//! committed by the next one (the checkpointer signs when one of the tenant's own logs grew; a
//! key change signs at once). Logs whose records must be destroyed (token values, keys) destroy
//! them as tombstones that keep their hash ([`crate::ChainLog::redact`]), so erasure leaves
//! every committed head valid.

use crate::chainlog::{check_head, head_of};
use crate::layout::DataDir;
use agentrail_event::TenantId;
use agentrail_event::hash::{Hash, from_hex, to_hex};
use std::path::PathBuf;

/// The first word of an extension line committing a log.
pub const LINE_PREFIX: &str = "agentrail-log";

/// A log whose head a checkpoint commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchored {
    Access,
    Retention,
    Tokens,
    Keys,
    Integrity,
    ApiKeys,
}

impl Anchored {
    pub const ALL: [Anchored; 6] = [
        Anchored::Access,
        Anchored::Retention,
        Anchored::Tokens,
        Anchored::Keys,
        Anchored::Integrity,
        Anchored::ApiKeys,
    ];

    /// Its name in an extension line.
    pub fn name(self) -> &'static str {
        match self {
            Anchored::Access => "access",
            Anchored::Retention => "retention",
            Anchored::Tokens => "tokens",
            Anchored::Keys => "keys",
            Anchored::Integrity => "integrity",
            Anchored::ApiKeys => "api-keys",
        }
    }

    /// What a reader calls it.
    pub fn label(self) -> &'static str {
        match self {
            Anchored::Access => "access log",
            Anchored::Retention => "retention log",
            Anchored::Tokens => "token vault",
            Anchored::Keys => "key log",
            Anchored::Integrity => "integrity log",
            Anchored::ApiKeys => "API key log",
        }
    }

    fn from_name(s: &str) -> Option<Anchored> {
        Anchored::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Whether its records may be destroyed (as tombstones keeping their hash).
    pub fn redactable(self) -> bool {
        matches!(self, Anchored::Tokens | Anchored::Keys)
    }

    /// Whether it is the system's (shared by every tenant) rather than the tenant's own.
    pub fn system(self) -> bool {
        matches!(self, Anchored::Integrity | Anchored::ApiKeys)
    }

    pub fn path(self, layout: &DataDir, tenant: &TenantId) -> PathBuf {
        if let Some(p) = self.system_path(layout) {
            return p;
        }
        let t = layout.tenant(tenant);
        match self {
            Anchored::Access => t.access_log(),
            Anchored::Retention => t.retention_log(),
            Anchored::Tokens => t.tokens_log(),
            _ => t.vault_keys(),
        }
    }

    /// The path of a system log (`None` for a tenant's own).
    pub fn system_path(self, layout: &DataDir) -> Option<PathBuf> {
        match self {
            Anchored::Integrity => Some(layout.system().integrity_log()),
            Anchored::ApiKeys => Some(layout.system().api_keys_log()),
            _ => None,
        }
    }
}

/// The extension lines of a checkpoint signed now: the head of every non-empty log.
pub fn lines(layout: &DataDir, tenant: &TenantId) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for a in Anchored::ALL {
        let path = a.path(layout, tenant);
        let (n, head) =
            head_of(&path, a.redactable()).map_err(|e| format!("{}: {e}", a.label()))?;
        if let Some(h) = head.filter(|_| n > 0) {
            out.push(format!("{LINE_PREFIX} {} {n} {}", a.name(), to_hex(&h)));
        }
    }
    Ok(out)
}

/// The lines of the tenant's own logs among `lines`: a change in these alone asks for a new
/// checkpoint (the system's logs change with every tenant's activity).
pub fn own(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| {
            parse_line(l)
                .ok()
                .flatten()
                .is_some_and(|(a, _, _)| !a.system())
        })
        .map(String::as_str)
        .collect()
}

/// The extension lines of a signed checkpoint note's text (the lines after origin, size and
/// root, up to the blank line before the signatures).
pub fn extension_lines(note_text: &str) -> Vec<String> {
    note_text
        .split('\n')
        .skip(3)
        .take_while(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `Some((log, count, hash))` for one of our lines, `None` for another extension line.
fn parse_line(line: &str) -> Result<Option<(Anchored, u64, Hash)>, String> {
    let mut w = line.split(' ');
    if w.next() != Some(LINE_PREFIX) {
        return Ok(None);
    }
    let bad = || {
        format!(
            "checkpoint extension line {line:?} is not `{LINE_PREFIX} <log> <count> <hex hash>`"
        )
    };
    let a = w.next().and_then(Anchored::from_name).ok_or_else(bad)?;
    let n = w
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let h = w.next().and_then(from_hex).ok_or_else(bad)?;
    if w.next().is_some() {
        return Err(bad());
    }
    Ok(Some((a, n, h)))
}

/// Checks every log a checkpoint's extension lines commit: it must still hold the committed
/// records, unedited. The error names the log and what is wrong.
pub fn check(layout: &DataDir, tenant: &TenantId, lines: &[String]) -> Result<(), String> {
    for l in lines {
        if let Some((a, n, h)) = parse_line(l)? {
            let path = a.path(layout, tenant);
            check_head(&path, a.redactable(), n, &h).map_err(|e| {
                format!(
                    "{} {}: {e}",
                    a.label(),
                    path.strip_prefix(layout.root()).unwrap_or(&path).display()
                )
            })?;
        }
    }
    Ok(())
}

/// The first body line of a restore statement: the SHA-256 of the checkpoint note it was
/// restored at.
const RESTORED_AT: &str = "checkpoint sha256";
/// The body line naming the logs a restore did not bring back.
const ABSENT: &str = "absent";

/// The committed logs a restore may come back without: those the archive never holds (token
/// values and keys must stay destroyable; the system's logs are not a tenant's). The access and
/// retention logs are archived, so a restore must bring them back.
pub const NOT_IN_ARCHIVE: [Anchored; 4] = [
    Anchored::Tokens,
    Anchored::Keys,
    Anchored::Integrity,
    Anchored::ApiKeys,
];

/// The body of the statement `agentrail restore` signs (`<origin>/restore`) and leaves in the
/// tenant's `restored` file: the tenant was rebuilt from the archive with `events` events at
/// the checkpoint `checkpoint_text`, from the manifest `manifest` (key and SHA-256), without
/// the logs `absent` (which the archive does not carry).
pub fn restore_statement(
    checkpoint_text: &str,
    events: u64,
    manifest: (&str, &str),
    absent: &[Anchored],
) -> Vec<String> {
    let mut absent_line = ABSENT.to_owned();
    for a in absent {
        absent_line.push(' ');
        absent_line.push_str(a.name());
    }
    vec![
        format!(
            "{RESTORED_AT} {}",
            to_hex(&agentrail_event::hash::sha256(checkpoint_text.as_bytes()))
        ),
        format!("events {events}"),
        format!("manifest {} {}", manifest.0, manifest.1),
        absent_line,
    ]
}

/// The logs the tenant was restored without, if it was restored from the archive at exactly the
/// checkpoint `latest_text`: its `restored` file is a statement `<origin>/restore` signed with
/// the log key naming that checkpoint. The archive does not carry those logs, so at that
/// checkpoint (and only there: the next one commits the logs as they are again) they are not
/// expected, and only those of [`NOT_IN_ARCHIVE`]. A forged statement needs the log key file
/// itself (no server or signer process signs one), which could sign any checkpoint anyway.
pub fn restored_without(
    layout: &DataDir,
    tenant: &TenantId,
    verifier: &agentrail_note::Verifier,
    origin: &str,
    latest_text: &str,
) -> Option<Vec<Anchored>> {
    let bytes = std::fs::read(layout.tenant(tenant).restored()).ok()?;
    let (note, _) = agentrail_note::open(&bytes, &[verifier]).ok()?;
    let want = format!(
        "{origin}/restore\n{RESTORED_AT} {}\n",
        to_hex(&agentrail_event::hash::sha256(latest_text.as_bytes()))
    );
    if !note.text.starts_with(&want) {
        return None;
    }
    let line = note.text.lines().find_map(|l| l.strip_prefix(ABSENT))?;
    Some(
        line.split_whitespace()
            .filter_map(Anchored::from_name)
            .filter(|a| NOT_IN_ARCHIVE.contains(a))
            .collect(),
    )
}

/// [`check`], except for the logs a restore at exactly this checkpoint did not bring back
/// ([`restored_without`]): every other committed log must hold what it committed. `Ok(true)`
/// when logs were excused so.
pub fn check_or_restored(
    layout: &DataDir,
    tenant: &TenantId,
    verifier: &agentrail_note::Verifier,
    origin: &str,
    latest_text: &str,
) -> Result<bool, String> {
    let lines = extension_lines(latest_text);
    let checked = check(layout, tenant, &lines);
    let Err(e) = checked else {
        return Ok(false);
    };
    let Some(absent) = restored_without(layout, tenant, verifier, origin, latest_text) else {
        return Err(e);
    };
    let kept: Vec<String> = lines
        .into_iter()
        .filter(|l| !matches!(parse_line(l), Ok(Some((a, _, _))) if absent.contains(&a)))
        .collect();
    check(layout, tenant, &kept).map(|()| true)
}

/// Only the lines of `lines` that commit one of `logs`.
pub fn lines_of(lines: &[String], logs: &[Anchored]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| matches!(parse_line(l), Ok(Some((a, _, _))) if logs.contains(&a)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ChainLog;
    use serde_json::{Map, Value, json};

    fn rec(i: u64) -> Map<String, Value> {
        match json!({"n": i}) {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn lines_commit_heads_and_check_finds_edits() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataDir::new(dir.path());
        let t = TenantId::parse("acme").unwrap();
        assert!(lines(&layout, &t).unwrap().is_empty());
        let access = ChainLog::open(&Anchored::Access.path(&layout, &t)).unwrap();
        for i in 0..5 {
            access.append(rec(i)).unwrap();
        }
        let integrity = ChainLog::open(&Anchored::Integrity.path(&layout, &t)).unwrap();
        integrity.append(rec(0)).unwrap();
        let ls = lines(&layout, &t).unwrap();
        assert_eq!(ls.len(), 2, "{ls:?}");
        assert!(ls[0].starts_with("agentrail-log access 5 "), "{ls:?}");
        assert_eq!(own(&ls), vec![ls[0].as_str()]);
        check(&layout, &t, &ls).unwrap();
        // A note's extension lines round-trip.
        let text = format!("o\n5\nroot\n{}\n{}\n\n— sig\n", ls[0], ls[1]);
        assert_eq!(extension_lines(&text), ls);
        // Appending more keeps what was committed; cutting the log does not.
        access.append(rec(5)).unwrap();
        check(&layout, &t, &ls).unwrap();
        drop(access);
        drop(integrity);
        let path = Anchored::Access.path(&layout, &t);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..16]).unwrap();
        let e = check(&layout, &t, &ls).unwrap_err();
        assert!(
            e.contains("access log") && e.contains("holds 0 records"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let e = check(&layout, &t, &ls).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        // Lines that are not ours are left alone; ours must be well formed.
        check(&layout, &t, &["other/ext 1".into()]).unwrap();
        assert!(check(&layout, &t, &["agentrail-log access x y".into()]).is_err());
    }
}
