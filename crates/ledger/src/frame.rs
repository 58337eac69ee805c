//! Byte formats of the ledger's files (docs/format.md is the reference; keep them in step).
//!
//! Every file starts with a 32-byte header; segments then hold framed records, the checkpoint log
//! holds framed notes, the entries and tree files hold fixed-size slots. All integers are
//! little-endian. Checksums are CRC32C (Castagnoli).
//!
//! This module is pure: it encodes and decodes byte slices and never touches a file.

/// Size of every file header.
pub const HEADER_LEN: usize = 32;
/// The only format version written and read.
pub const FORMAT_VERSION: u16 = 1;

/// What a file holds, by its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Entries,
    Tree,
    Checkpoints,
}

impl FileKind {
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            FileKind::Segment => b"ARLSEG\r\n",
            FileKind::Entries => b"ARLENT\r\n",
            FileKind::Tree => b"ARLTRE\r\n",
            FileKind::Checkpoints => b"ARLCKP\r\n",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Segment => "segment",
            FileKind::Entries => "entries file",
            FileKind::Tree => "tree file",
            FileKind::Checkpoints => "checkpoint log",
        }
    }
}

/// Why a file header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("file is shorter than its {HEADER_LEN}-byte header")]
    Short,
    #[error("bad magic: not a {0}")]
    Magic(&'static str),
    #[error("header checksum mismatch")]
    Checksum,
    #[error("unsupported format version {0} (this build reads version {FORMAT_VERSION})")]
    Version(u16),
}

/// The 32-byte header: magic, version, flags, reserved, `base` (a segment's first seq; 0
/// elsewhere), reserved, CRC32C of the first 28 bytes.
pub fn encode_header(kind: FileKind, base: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(kind.magic());
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 10..12 flags, 12..16 reserved: zero.
    h[16..24].copy_from_slice(&base.to_le_bytes());
    // 24..28 reserved: zero.
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header and returns its `base`.
pub fn decode_header(kind: FileKind, bytes: &[u8]) -> Result<u64, HeaderError> {
    let h = bytes.get(..HEADER_LEN).ok_or(HeaderError::Short)?;
    if &h[0..8] != kind.magic() {
        return Err(HeaderError::Magic(kind.name()));
    }
    if crc32c::crc32c(&h[0..28]) != u32_at(h, 28) {
        return Err(HeaderError::Checksum);
    }
    let version = u16::from_le_bytes([h[8], h[9]]);
    if version != FORMAT_VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(u64_at(h, 16))
}

// ---- segment records ------------------------------------------------------------------------

/// Bytes before a record's payload: length u32, seq u64, header CRC u32, payload CRC u32.
pub const RECORD_HEADER_LEN: usize = 20;
/// The largest payload a record may hold (an event's stored form).
pub const MAX_RECORD_LEN: usize = 16 << 20;

/// Bit 31 of a record's length word: more records of the same batch follow this one. The last
/// record of a batch has it clear, and so has every record written before batches were framed
/// (each of those was its own batch), so old segments read unchanged.
pub const MORE_IN_BATCH: u32 = 1 << 31;

/// Frames one record: the stored form of the event with sequence number `seq`; `more` when it
/// is not the last record of its batch.
pub fn encode_record(seq: u64, payload: &[u8], more: bool, out: &mut Vec<u8>) {
    debug_assert!(!payload.is_empty() && payload.len() <= MAX_RECORD_LEN);
    let mut h = [0u8; RECORD_HEADER_LEN];
    let word = payload.len() as u32 | if more { MORE_IN_BATCH } else { 0 };
    h[0..4].copy_from_slice(&word.to_le_bytes());
    h[4..12].copy_from_slice(&seq.to_le_bytes());
    let hcrc = crc32c::crc32c(&h[0..12]);
    h[12..16].copy_from_slice(&hcrc.to_le_bytes());
    h[16..20].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
}

/// What the bytes at one offset of a segment hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRead<'a> {
    /// A complete record whose checksums hold.
    Record {
        seq: u64,
        payload: &'a [u8],
        /// Offset just past the record.
        next: usize,
        /// More records of its batch follow: the batch is committed only by a record without
        /// this flag (always false for checkpoint notes).
        more: bool,
    },
    /// The file ends here.
    End,
    /// The bytes look like an interrupted write: an incomplete record at the end of the file, or
    /// a tail that was allocated but never written (zeros).
    Torn { reason: &'static str },
    /// The bytes are damaged in a way no interrupted append produces.
    Corrupt { reason: String },
}

/// Whether `rest` (the bytes from file offset `at` to the end of the file) ends in a run of zeros
/// that starts at or before a 512-byte boundary: what a file extended past its written data
/// looks like after a crash. A single damaged byte never does (unless it is the file's last byte
/// and sits exactly on a boundary, and even then a checkpoint covering it turns it into damage).
fn zero_filled_tail(rest: &[u8], at: u64) -> bool {
    let written = rest.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let boundary = (at + written as u64).div_ceil(512) * 512;
    boundary < at + rest.len() as u64
}

/// Reads the record at `offset` of `bytes`, the tail of a segment file that starts at file
/// offset `base` (0 when `bytes` is the whole file) and runs to its end.
pub fn read_record(bytes: &[u8], offset: usize, base: u64) -> RecordRead<'_> {
    let rest = &bytes[offset.min(bytes.len())..];
    if rest.is_empty() {
        return RecordRead::End;
    }
    if rest.len() < RECORD_HEADER_LEN {
        return RecordRead::Torn {
            reason: "incomplete record header at the end of the file",
        };
    }
    let word = u32_at(rest, 0);
    let more = word & MORE_IN_BATCH != 0;
    let len = (word & !MORE_IN_BATCH) as usize;
    let seq = u64_at(rest, 4);
    if crc32c::crc32c(&rest[0..12]) != u32_at(rest, 12) {
        if rest.iter().all(|&b| b == 0) || zero_filled_tail(rest, base + offset as u64) {
            return RecordRead::Torn {
                reason: "zero-filled tail (space allocated but never written)",
            };
        }
        return RecordRead::Corrupt {
            reason: "record header checksum mismatch".into(),
        };
    }
    if len == 0 || len > MAX_RECORD_LEN {
        return RecordRead::Corrupt {
            reason: format!("record length {len} is out of range"),
        };
    }
    let end = RECORD_HEADER_LEN + len;
    if rest.len() < end {
        return RecordRead::Torn {
            reason: "incomplete record at the end of the file",
        };
    }
    let payload = &rest[RECORD_HEADER_LEN..end];
    if crc32c::crc32c(payload) != u32_at(rest, 16) {
        // Canonical JSON never contains a NUL byte; zeros in the last record mean pages that
        // were never written, which only an interrupted append leaves behind.
        if rest.len() == end && zero_filled_tail(rest, base + offset as u64) {
            return RecordRead::Torn {
                reason: "last record was only partly written (zero-filled pages)",
            };
        }
        return RecordRead::Corrupt {
            reason: format!("record payload checksum mismatch (seq {seq})"),
        };
    }
    RecordRead::Record {
        seq,
        payload,
        next: offset + end,
        more,
    }
}

// ---- checkpoint log -------------------------------------------------------------------------

/// Bytes before a checkpoint note: length u32, CRC32C of the length u32, CRC32C of the note u32.
pub const NOTE_HEADER_LEN: usize = 12;
/// The largest signed note the log accepts.
pub const MAX_NOTE_LEN: usize = 64 << 10;

pub fn encode_note(note: &[u8], out: &mut Vec<u8>) {
    let len = (note.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(note).to_le_bytes());
    out.extend_from_slice(note);
}

/// Reads the framed note at `offset` of the whole checkpoint log; the same torn/corrupt
/// distinction as records.
pub fn read_note(bytes: &[u8], offset: usize) -> RecordRead<'_> {
    let rest = &bytes[offset.min(bytes.len())..];
    if rest.is_empty() {
        return RecordRead::End;
    }
    if rest.len() < NOTE_HEADER_LEN {
        return RecordRead::Torn {
            reason: "incomplete checkpoint header at the end of the file",
        };
    }
    if crc32c::crc32c(&rest[0..4]) != u32_at(rest, 4) {
        if rest.iter().all(|&b| b == 0) || zero_filled_tail(rest, offset as u64) {
            return RecordRead::Torn {
                reason: "zero-filled tail (space allocated but never written)",
            };
        }
        return RecordRead::Corrupt {
            reason: "checkpoint header checksum mismatch".into(),
        };
    }
    let len = u32_at(rest, 0) as usize;
    if len == 0 || len > MAX_NOTE_LEN {
        return RecordRead::Corrupt {
            reason: format!("checkpoint length {len} is out of range"),
        };
    }
    let end = NOTE_HEADER_LEN + len;
    if rest.len() < end {
        return RecordRead::Torn {
            reason: "incomplete checkpoint at the end of the file",
        };
    }
    let note = &rest[NOTE_HEADER_LEN..end];
    if crc32c::crc32c(note) != u32_at(rest, 8) {
        if rest.len() == end && zero_filled_tail(rest, offset as u64) {
            return RecordRead::Torn {
                reason: "last checkpoint was only partly written (zero-filled pages)",
            };
        }
        return RecordRead::Corrupt {
            reason: "checkpoint checksum mismatch".into(),
        };
    }
    RecordRead::Record {
        seq: 0,
        payload: note,
        next: offset + end,
        more: false,
    }
}

// ---- entries --------------------------------------------------------------------------------

/// First 16 bytes of SHA-256 of an id: how entries and the in-memory maps key event and session
/// ids (collisions are checked against the record itself where it matters).
pub fn digest16(id: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(id.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// One fixed-size slot per seq in the entries file.
pub const ENTRY_LEN: usize = 88;

/// What the ledger keeps per event besides the record itself: where the record is and what the
/// sequencer needs to rebuild its maps without reading every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Byte offset of the record in its segment.
    pub offset: u64,
    /// The event hash.
    pub hash: [u8; 32],
    /// First 16 bytes of SHA-256(event_id).
    pub id_digest: [u8; 16],
    /// First 16 bytes of SHA-256(session_id), or `None`.
    pub session: Option<([u8; 16], u64)>,
}

pub fn encode_entry(e: &Entry) -> [u8; ENTRY_LEN] {
    let mut b = [0u8; ENTRY_LEN];
    b[0..8].copy_from_slice(&e.offset.to_le_bytes());
    b[8..40].copy_from_slice(&e.hash);
    b[40..56].copy_from_slice(&e.id_digest);
    match e.session {
        Some((digest, session_seq)) => {
            b[56..72].copy_from_slice(&digest);
            b[72..80].copy_from_slice(&session_seq.to_le_bytes());
        }
        None => b[72..80].copy_from_slice(&u64::MAX.to_le_bytes()),
    }
    let crc = crc32c::crc32c(&b[0..80]);
    b[80..84].copy_from_slice(&crc.to_le_bytes());
    // 84..88 reserved: zero.
    b
}

/// Decodes an entry slot; `None` when its checksum fails.
pub fn decode_entry(b: &[u8]) -> Option<Entry> {
    let b = b.get(..ENTRY_LEN)?;
    if crc32c::crc32c(&b[0..80]) != u32_at(b, 80) || u32_at(b, 84) != 0 {
        return None;
    }
    let session_seq = u64_at(b, 72);
    if session_seq == u64::MAX && b[56..72].iter().any(|&x| x != 0) {
        // Only one encoding of "no session" exists (found by the ledger_frames fuzz target).
        return None;
    }
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&b[8..40]);
    let mut id_digest = [0u8; 16];
    id_digest.copy_from_slice(&b[40..56]);
    let session = (session_seq != u64::MAX).then(|| {
        let mut d = [0u8; 16];
        d.copy_from_slice(&b[56..72]);
        (d, session_seq)
    });
    Some(Entry {
        offset: u64_at(b, 0),
        hash,
        id_digest,
        session,
    })
}

// ---- tree -----------------------------------------------------------------------------------

/// Position of perfect node `(level, index)` in the tree file's post-order layout: nodes are
/// stored in the order appending leaves completes them, so the file only ever grows.
pub fn node_position(level: u32, index: u64) -> u64 {
    // Leaves before the one that completes this node.
    let before = ((index + 1) << level) - 1;
    2 * before - u64::from(before.count_ones()) + u64::from(level)
}

/// Number of nodes stored for a tree of `size` leaves.
pub fn node_count(size: u64) -> u64 {
    2 * size - u64::from(size.count_ones())
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 5];
        encode_record(seq, payload, false, &mut out);
        out
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = encode_header(FileKind::Segment, 42);
        assert_eq!(decode_header(FileKind::Segment, &h), Ok(42));
        assert_eq!(
            decode_header(FileKind::Tree, &h),
            Err(HeaderError::Magic("tree file"))
        );
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(
            decode_header(FileKind::Segment, &bad),
            Err(HeaderError::Checksum)
        );
        assert_eq!(
            decode_header(FileKind::Segment, &h[..10]),
            Err(HeaderError::Short)
        );
    }

    #[test]
    fn records_read_back_and_tails_are_classified() {
        let whole = |seq, payload, next, more| RecordRead::Record {
            seq,
            payload,
            next,
            more,
        };
        let bytes = record(7, br#"{"a":1}"#);
        assert_eq!(
            read_record(&bytes, 5, 0),
            whole(7, br#"{"a":1}"#, bytes.len(), false)
        );
        // The batch flag rides in the length word, covered by the header checksum.
        let mut framed = Vec::new();
        encode_record(8, br#"{"b":2}"#, true, &mut framed);
        assert_eq!(
            read_record(&framed, 0, 0),
            whole(8, br#"{"b":2}"#, framed.len(), true)
        );
        framed[3] &= 0x7f;
        assert!(matches!(
            read_record(&framed, 0, 0),
            RecordRead::Corrupt { .. }
        ));
        assert_eq!(read_record(&bytes, bytes.len(), 0), RecordRead::End);
        // Every strict prefix of a record is a torn write, never corruption.
        for cut in 6..bytes.len() {
            assert!(
                matches!(read_record(&bytes[..cut], 5, 0), RecordRead::Torn { .. }),
                "cut at {cut}"
            );
        }
        // Zero-filled pages at the end (from a 512-byte boundary on): torn.
        let long = record(7, &vec![b'x'; 2000]);
        let mut zeroed = long.clone();
        zeroed[1024..].fill(0);
        assert!(matches!(
            read_record(&zeroed, 5, 0),
            RecordRead::Torn { .. }
        ));
        // A few zeroed bytes that do not reach back to a boundary: damage, not a torn write.
        let mut short = long.clone();
        let n = short.len();
        short[n - 3..].fill(0);
        assert!(matches!(
            read_record(&short, 5, 0),
            RecordRead::Corrupt { .. }
        ));
        // A flipped bit anywhere in a complete record: corrupt, never torn, never a record.
        for i in 5..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x40;
            let r = read_record(&flipped, 5, 0);
            assert!(matches!(r, RecordRead::Corrupt { .. }), "byte {i}: {r:?}");
        }
    }

    #[test]
    fn entries_round_trip() {
        let e = Entry {
            offset: 12345,
            hash: [7; 32],
            id_digest: [9; 16],
            session: Some(([3; 16], 17)),
        };
        assert_eq!(decode_entry(&encode_entry(&e)), Some(e));
        let e2 = Entry { session: None, ..e };
        assert_eq!(decode_entry(&encode_entry(&e2)), Some(e2));
        let mut bad = encode_entry(&e);
        bad[3] ^= 1;
        assert_eq!(decode_entry(&bad), None);
    }

    #[test]
    fn node_positions_follow_append_order() {
        let mut order = Vec::new();
        let mut f = agentrail_merkle::Frontier::new();
        for i in 0..100u64 {
            f.push([i as u8; 32], |level, index, _| order.push((level, index)));
            assert_eq!(order.len() as u64, node_count(i + 1));
        }
        for (pos, (level, index)) in order.into_iter().enumerate() {
            assert_eq!(node_position(level, index), pos as u64);
        }
    }
}
