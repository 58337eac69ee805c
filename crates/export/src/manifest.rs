//! The export manifest (`manifest.json`) and its signature.
//!
//! `manifest.json` is `{"manifest": {...}, "signature": "<C2SP signed note>"}`. The note is signed
//! with the log's key (the tenant's verifier key checks it); its text is
//! `<origin>/export\nsha256 <hex of the RFC 8785 bytes of "manifest">\n`, so it commits to every
//! field, and its first line can never be a checkpoint's.

use agentrail_event::hash::{sha256, to_hex};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "agentrail-export/v1";
pub const MANIFEST_FILE: &str = "manifest.json";
/// The folder beside `manifest.json` that holds the data files, so that a reader given the
/// folder (`pd.read_parquet("export/data")`, DuckDB's `'export/data/*.parquet'`) sees only them.
pub const DATA_DIR: &str = "data";

/// Whether `name` is where a data file of an export may be: `data/<file>`, or a bare `<file>`
/// (exports made before [`DATA_DIR`] existed), `<file>` a plain name. Nothing outside the export's
/// directory can be named.
pub fn valid_file_path(name: &str) -> bool {
    let file = name
        .strip_prefix(DATA_DIR)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(name);
    !file.is_empty()
        && file != "."
        && file != ".."
        && !file.contains(['/', '\\'])
        && file != MANIFEST_FILE
}

/// How the events of an export are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One stored event per line: exactly the RFC 8785 bytes that were hashed.
    Ndjson,
    /// Structural columns plus `stored`, the same bytes as a string.
    Parquet,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Ndjson => "ndjson",
            FileFormat::Parquet => "parquet",
        }
    }

    pub fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "ndjson" => Some(FileFormat::Ndjson),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }
}

/// One data file of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The file's path relative to `manifest.json`: `data/events-<first seq>.<ext>`.
    pub name: String,
    pub first_seq: u64,
    pub count: u64,
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// What was asked for (recorded as given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_seq: Option<u64>,
    /// Exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_seq: Option<u64>,
    /// RFC 3339 on `received_at`, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// RFC 3339 on `received_at`, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Everything a verifier needs, besides the data files and the verifier key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub tenant: String,
    /// The checkpoint origin of the tenant's log.
    pub origin: String,
    pub file_format: FileFormat,
    pub selection: Selection,
    /// The events are exactly seqs `[first_seq, end_seq)`.
    pub first_seq: u64,
    pub end_seq: u64,
    pub count: u64,
    /// Hash of event `first_seq - 1` (`null` at 0): where the exported chain starts.
    pub prev_hash: Option<String>,
    pub files: Vec<FileEntry>,
    /// The compact range `[0, first_seq)`: roots of its perfect subtrees, largest first (hex).
    /// With the exported leaves it gives the root of the tree of size `end_seq`.
    pub frontier: Vec<String>,
    /// The signed checkpoint (size ≥ `end_seq`) current when the export was made.
    pub checkpoint: String,
    /// RFC 6962 consistency proof from size `end_seq` to the checkpoint's size (hex).
    pub consistency: Vec<String>,
}

/// `manifest.json` as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    pub manifest: Manifest,
    /// The C2SP signed note committing to the manifest.
    pub signature: String,
}

impl Manifest {
    /// SHA-256 of the manifest's RFC 8785 bytes: what the signature commits to.
    pub fn digest(&self) -> Result<String, String> {
        let v = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let bytes = agentrail_event::json::to_canonical_vec(&v).map_err(|e| e.to_string())?;
        Ok(to_hex(&sha256(&bytes)))
    }

    /// The line of the signed statement.
    pub fn statement(&self) -> Result<String, String> {
        Ok(format!("sha256 {}", self.digest()?))
    }
}
