//! The OTLP decoder and span mapper on arbitrary bodies, as protobuf and as OTLP JSON: never
//! panics; every span maps on its own (a request's events are those of its spans sent one by
//! one, so an exporter's re-send batched differently is a replay); an event names the event id
//! it was mapped under; and what the validator accepts stays valid when mapped again.
#![no_main]

use agentrail_otlp::{Encoding, ExportTraceServiceRequest, decode_traces, map_traces};
use libfuzzer_sys::fuzz_target;

fn check(req: &ExportTraceServiceRequest) {
    let mapped = map_traces(req);
    let mut alone = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let mut one = rs.clone();
                let mut scope = ss.clone();
                scope.spans = vec![span.clone()];
                one.scope_spans = vec![scope];
                alone.extend(map_traces(&ExportTraceServiceRequest {
                    resource_spans: vec![one],
                }));
            }
        }
    }
    assert_eq!(mapped, alone);
    for m in &mapped {
        if let Ok(ev) = &m.event {
            assert_eq!(ev["event_id"].as_str(), m.event_id.as_deref());
            let _ = agentrail_event::validate_value(ev.clone());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    for enc in [Encoding::Protobuf, Encoding::Json] {
        if let Ok(req) = decode_traces(data, enc) {
            check(&req);
        }
    }
});
