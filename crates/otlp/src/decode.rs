//! Decoding an OTLP/HTTP request body (already decompressed and within the body limit).

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

/// How an OTLP/HTTP body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf` (the OTLP/HTTP default).
    Protobuf,
    /// `application/json` (OTLP JSON).
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names (parameters ignored), `None` for another type.
    pub fn from_content_type(ct: &str) -> Option<Encoding> {
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf")
            || essence.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }
}

/// Why a body is not an OTLP request: the whole request is refused (400), nothing is kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    #[error("malformed OTLP protobuf: {0}")]
    Protobuf(String),
    #[error("malformed OTLP JSON: {0}")]
    Json(String),
}

/// Decodes an `ExportTraceServiceRequest`.
pub fn decode_traces(body: &[u8], enc: Encoding) -> Result<ExportTraceServiceRequest, OtlpError> {
    decode(body, enc)
}

/// Decodes an `ExportLogsServiceRequest`.
pub fn decode_logs(body: &[u8], enc: Encoding) -> Result<ExportLogsServiceRequest, OtlpError> {
    decode(body, enc)
}

fn decode<M>(body: &[u8], enc: Encoding) -> Result<M, OtlpError>
where
    M: Message + Default + serde::de::DeserializeOwned,
{
    match enc {
        Encoding::Protobuf => M::decode(body).map_err(|e| OtlpError::Protobuf(e.to_string())),
        Encoding::Json => {
            let mut v: Value =
                serde_json::from_slice(body).map_err(|e| OtlpError::Json(e.to_string()))?;
            fill_empty_lists(&mut v);
            serde_json::from_value(v).map_err(|e| OtlpError::Json(e.to_string()))
        }
    }
}

/// Protobuf-JSON writers leave out empty repeated fields (`{"arrayValue":{}}`, a `KeyValue`
/// without `value`), which the `opentelemetry-proto` serde types require: they are filled in
/// here as the empty values they stand for, so a valid request is not refused for them.
fn fill_empty_lists(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for key in ["arrayValue", "kvlistValue"] {
                if let Some(Value::Object(list)) = m.get_mut(key) {
                    list.entry("values")
                        .or_insert_with(|| Value::Array(Vec::new()));
                }
            }
            // A `KeyValue` (it has a string `key`) with no value holds an empty AnyValue.
            if m.get("key").is_some_and(Value::is_string) && !m.contains_key("value") {
                m.insert("value".into(), Value::Object(serde_json::Map::new()));
            }
            m.values_mut().for_each(fill_empty_lists);
        }
        Value::Array(a) => a.iter_mut().for_each(fill_empty_lists),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_their_encoding() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }

    #[test]
    fn json_with_empty_lists_and_string_integers_decodes() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"chat","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":1700000000500000000,
            "attributes":[{"key":"a","value":{"arrayValue":{}}},{"key":"b"},
                {"key":"n","value":{"intValue":"42"}},{"key":"u","value":{"futureValue":1}}]}]}]}]}"#;
        let req = decode_traces(body, Encoding::Json).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            hex::encode(&span.trace_id),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(span.end_time_unix_nano, 1_700_000_000_500_000_000);
        assert_eq!(span.attributes.len(), 4);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(matches!(
            decode_traces(b"{\"resourceSpans\":", Encoding::Json),
            Err(OtlpError::Json(_))
        ));
        assert!(matches!(
            decode_traces(&[0x0a, 0xff, 0x01], Encoding::Protobuf),
            Err(OtlpError::Protobuf(_))
        ));
        assert_eq!(
            decode_traces(b"{}", Encoding::Json).unwrap(),
            ExportTraceServiceRequest::default()
        );
    }
}
