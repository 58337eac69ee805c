//! agentrail's OpenTelemetry intake (DESIGN.md §9.1): the one crate that knows OTLP types.
//!
//! [`decode_traces`] reads an OTLP/HTTP `ExportTraceServiceRequest` (protobuf, or OTLP JSON:
//! hex ids, lowerCamelCase, 64-bit integers as strings) with the `opentelemetry-proto` types;
//! [`map_traces`] turns each span into a v1 event (a JSON object for the one ingest operation,
//! which validates, protects and appends it) or a reason it cannot be one. The mapping reads the
//! GenAI semantic conventions, current names first and the deprecated ones still on the wire
//! after them, with OpenInference fallbacks.
//!
//! Pure and sync: no I/O, no service; the server decodes, the service ingests.

mod decode;
mod logs;
mod response;
mod trace;
mod value;

pub use decode::{Encoding, OtlpError, decode_logs, decode_traces};
pub use logs::map_logs;
pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use response::{Signal, export_response, status_body};
pub use trace::{MappedSpan, map_traces};
pub use value::any_value;
