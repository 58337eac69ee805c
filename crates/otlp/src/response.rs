//! OTLP/HTTP answers, in the encoding of the request (OTLP/HTTP spec, "Response"): an
//! `Export*ServiceResponse` with `partial_success` when some items were rejected, and for a
//! refused request a `google.rpc.Status` body.

use crate::Encoding;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::json;

/// `google.rpc.Status` without `details` (agentrail sends none). `opentelemetry-proto` does not
/// carry the google.rpc types; this derives its encoding with prost, field numbers from
/// google/rpc/status.proto.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// Which signal an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Logs,
}

/// The success answer: `rejected` items (spans or log records) with a message naming why, or
/// a full success (an empty response) when none was.
pub fn export_response(signal: Signal, enc: Encoding, rejected: u64, message: &str) -> Vec<u8> {
    let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
    match enc {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.to_owned(),
                }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message.to_owned(),
                }),
            }
            .encode_to_vec(),
        },
        // Written here: the serde form of the types says `"partialSuccess": null` for a full
        // success, which OTLP JSON leaves out. The count is a JSON number, which protobuf-JSON
        // readers accept for int64 as well as a string (and the serde form requires).
        Encoding::Json if rejected == 0 => b"{}".to_vec(),
        Encoding::Json => {
            let field = match signal {
                Signal::Traces => "rejectedSpans",
                Signal::Logs => "rejectedLogRecords",
            };
            let v = json!({"partialSuccess": {field: rejected, "errorMessage": message}});
            serde_json::to_vec(&v).unwrap_or_default()
        }
    }
}

/// The gRPC status code an HTTP status stands for (OTLP/HTTP bodies of refusals carry one).
fn rpc_code(http: u16) -> i32 {
    match http {
        400 | 415 => 3,       // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        408 => 4,             // DEADLINE_EXCEEDED
        413 | 429 | 507 => 8, // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// The body of a refused request: a `google.rpc.Status` with the code for `http` and the
/// message.
pub fn status_body(enc: Encoding, http: u16, message: &str) -> Vec<u8> {
    let code = rpc_code(http);
    match enc {
        Encoding::Protobuf => RpcStatus {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&json!({"code": code, "message": message})).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_as_the_otlp_types() {
        let full = export_response(Signal::Traces, Encoding::Protobuf, 0, "");
        assert_eq!(
            ExportTraceServiceResponse::decode(&full[..]).unwrap(),
            ExportTraceServiceResponse::default()
        );
        let part = export_response(Signal::Logs, Encoding::Protobuf, 2, "bad ids");
        let r = ExportLogsServiceResponse::decode(&part[..]).unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_log_records, 2);
        let json: ExportTraceServiceResponse =
            serde_json::from_slice(&export_response(Signal::Traces, Encoding::Json, 3, "x"))
                .unwrap();
        assert_eq!(json.partial_success.unwrap().rejected_spans, 3);
        assert_eq!(
            export_response(Signal::Traces, Encoding::Json, 0, ""),
            b"{}"
        );
        let st = RpcStatus::decode(&status_body(Encoding::Protobuf, 503, "busy")[..]).unwrap();
        assert_eq!((st.code, st.message.as_str()), (14, "busy"));
    }
}
