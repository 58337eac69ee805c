//! c2sp.org/tlog-proof@v1: an offline inclusion receipt — a leaf index, its inclusion proof and
//! the signed checkpoint it proves against (<https://c2sp.org/tlog-proof>).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof: the checkpoint is kept verbatim, signatures and all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    /// Inclusion proof hashes, leaf sibling first.
    pub hashes: Vec<[u8; 32]>,
    pub checkpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    #[error("tlog-proof is not valid UTF-8")]
    NotUtf8,
    #[error("tlog-proof line {line}: {reason}")]
    Malformed { line: usize, reason: String },
}

impl TlogProof {
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", STANDARD.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&STANDARD.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(bytes: &[u8]) -> Result<TlogProof, TlogProofError> {
        let s = std::str::from_utf8(bytes).map_err(|_| TlogProofError::NotUtf8)?;
        let bad = |line: usize, reason: &str| TlogProofError::Malformed {
            line,
            reason: reason.into(),
        };
        let (head, checkpoint) = s
            .split_once("\n\n")
            .ok_or_else(|| bad(1, "no blank line before the checkpoint"))?;
        let mut lines = head
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .peekable();
        match lines.next() {
            Some((_, HEADER)) => {}
            _ => return Err(bad(1, "expected c2sp.org/tlog-proof@v1")),
        }
        let mut extra = None;
        if let Some(&(n, l)) = lines.peek()
            && let Some(b64) = l.strip_prefix("extra ")
        {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| bad(n, "extra is not base64"))?,
            );
            lines.next();
        }
        let (n, index_line) = lines.next().ok_or_else(|| bad(2, "missing index line"))?;
        let index_s = index_line
            .strip_prefix("index ")
            .ok_or_else(|| bad(n, "expected \"index <n>\""))?;
        if index_s.is_empty()
            || !index_s.bytes().all(|b| b.is_ascii_digit())
            || (index_s.len() > 1 && index_s.starts_with('0'))
        {
            return Err(bad(
                n,
                "index is not a decimal number without leading zeros",
            ));
        }
        let index = index_s.parse().map_err(|_| bad(n, "index is too large"))?;
        let mut hashes = Vec::new();
        for (n, l) in lines {
            let h: [u8; 32] = STANDARD
                .decode(l)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(n, "not the base64 of a 32-byte hash"))?;
            hashes.push(h);
        }
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }
}
