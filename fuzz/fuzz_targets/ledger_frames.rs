//! The ledger's frame decoders on arbitrary bytes (what recovery and `verify` read from disk):
//! never panic; every record they accept lies inside the input and re-encodes to the same bytes.
#![no_main]

use agentrail_ledger::frame::{
    HEADER_LEN, RecordRead, decode_entry, encode_entry, encode_record, read_note, read_record,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut pos = HEADER_LEN.min(data.len());
    while let RecordRead::Record {
        seq,
        payload,
        next,
        more,
    } = read_record(data, pos, 0)
    {
        assert!(next > pos && next <= data.len());
        let mut again = Vec::new();
        encode_record(seq, payload, more, &mut again);
        assert_eq!(&data[pos..next], &again[..]);
        pos = next;
    }
    let mut pos = 0;
    while let RecordRead::Record { next, .. } = read_note(data, pos) {
        assert!(next > pos && next <= data.len());
        pos = next;
    }
    for slot in data.chunks(88) {
        if let Some(e) = decode_entry(slot) {
            assert_eq!(&encode_entry(&e)[..], slot);
        }
    }
});
