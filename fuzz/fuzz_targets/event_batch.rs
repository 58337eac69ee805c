//! Event validation of arbitrary JSON and NDJSON bodies: never panics, and the item count the
//! batch limit is checked against (before parsing) is the number of items parsed.
#![no_main]

use agentrail_event::batch::{BatchFormat, Position, count_items, parse_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let json = parse_batch(data, BatchFormat::Json);
    // An array that parsed: one item per element, as counted.
    if json.iter().all(|i| matches!(i.position, Position::Index(_))) && !json.is_empty() {
        assert_eq!(count_items(data, BatchFormat::Json), json.len());
    }
    let nd = parse_batch(data, BatchFormat::Ndjson);
    if !nd.iter().any(|i| i.position == Position::Single) {
        assert_eq!(count_items(data, BatchFormat::Ndjson), nd.len());
    }
});
