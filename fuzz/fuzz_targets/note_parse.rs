//! Signed-note, checkpoint and tlog-proof parsing on arbitrary bytes: never panics, and a note that
//! parses re-serializes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = agentrail_note::Note::parse(data) {
        // Base64 may have non-canonical padding bits, so compare after a second round trip.
        let text = note.to_text();
        let again = agentrail_note::Note::parse(text.as_bytes()).expect("re-parse");
        assert_eq!(again, note);
        let _ = agentrail_note::Checkpoint::parse_text(&note.text);
    }
    let _ = agentrail_note::TlogProof::parse(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<agentrail_note::Verifier>();
    }
});
