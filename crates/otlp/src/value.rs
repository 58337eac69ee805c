//! OTLP attribute values as JSON.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use serde_json::{Map, Value};

/// An `AnyValue` as JSON: strings, booleans and integers as themselves (one beyond ±2^53 as its
/// decimal string), doubles as numbers (a
/// non-finite one, which JSON cannot hold, as its name: `"NaN"`, `"inf"`), bytes as base64,
/// arrays and key-value lists as arrays and objects; an empty value as `null`. Taken by value:
/// a decoded request's strings move into the event rather than being copied.
pub fn any_value(v: AnyValue) -> Value {
    match v.value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(b),
        // Beyond ±2^53 a JSON number is not exact (the ledger refuses it): its decimal string.
        Some(any_value::Value::IntValue(i)) if i.unsigned_abs() > 1 << 53 => {
            Value::String(i.to_string())
        }
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(any_value::Value::BytesValue(b)) => Value::String(B64.encode(b)),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(any_value).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attributes(kv.values)),
    }
}

/// Key-value pairs as a JSON object (a repeated key: the last one).
pub(crate) fn attributes(kvs: Vec<KeyValue>) -> Map<String, Value> {
    kvs.into_iter()
        .map(|kv| (kv.key, kv.value.map_or(Value::Null, any_value)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use serde_json::json;

    fn any(v: any_value::Value) -> AnyValue {
        AnyValue { value: Some(v) }
    }

    #[test]
    fn every_kind_of_value_has_a_json_form() {
        use any_value::Value as V;
        let kv = KeyValue {
            key: "k".into(),
            value: Some(any(V::IntValue(-3))),
            ..Default::default()
        };
        let cases = [
            (any(V::StringValue("s".into())), json!("s")),
            (any(V::BoolValue(true)), json!(true)),
            (any(V::IntValue(1 << 53)), json!(1_i64 << 53)),
            (any(V::IntValue(-(1 << 53) - 1)), json!("-9007199254740993")),
            (any(V::IntValue(i64::MAX)), json!("9223372036854775807")),
            (any(V::DoubleValue(0.25)), json!(0.25)),
            (any(V::DoubleValue(f64::NAN)), json!("NaN")),
            (any(V::DoubleValue(f64::INFINITY)), json!("inf")),
            (any(V::BytesValue(vec![0, 255])), json!("AP8=")),
            (
                any(V::ArrayValue(ArrayValue {
                    values: vec![any(V::BoolValue(false)), AnyValue::default()],
                })),
                json!([false, null]),
            ),
            (
                any(V::KvlistValue(KeyValueList { values: vec![kv] })),
                json!({"k": -3}),
            ),
            (AnyValue::default(), Value::Null),
        ];
        for (v, want) in cases {
            assert_eq!(any_value(v.clone()), want, "{v:?}");
        }
    }
}
