//! Batches of events as emitters send them: one JSON object, a JSON array of objects, or NDJSON
//! (one object per line). Every item is validated; problems are reported per item with its
//! position, so a client can fix a 10,000-line file in one pass.

use crate::json;
use crate::validate::{InvalidEvent, Problem, ValidEvent, validate_bytes, validate_value};
use serde_json::Value;

/// How a batch is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchFormat {
    /// One JSON object, or an array of objects.
    Json,
    /// One JSON object per line; blank lines are skipped.
    Ndjson,
}

impl BatchFormat {
    /// `.ndjson` and `.jsonl` files are NDJSON; everything else is JSON.
    pub fn from_file_name(name: &str) -> BatchFormat {
        if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
            BatchFormat::Ndjson
        } else {
            BatchFormat::Json
        }
    }
}

/// Where an item sits in its batch: the array index (JSON) or the 1-based line (NDJSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Single,
    Index(usize),
    Line(usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Single => f.write_str("event"),
            Position::Index(i) => write!(f, "item {i}"),
            Position::Line(l) => write!(f, "line {l}"),
        }
    }
}

/// One item of a batch and its validation outcome.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub position: Position,
    pub result: Result<ValidEvent, InvalidEvent>,
}

/// How many items a batch holds, counted without parsing or validating them (a byte scan: no
/// allocation), so a batch limit is enforced before the work and memory a batch costs. NDJSON:
/// non-blank lines. JSON: the elements of a top-level array (1 for anything else; a body that
/// is not well-formed is counted as far as it goes, and the parse reports it).
pub fn count_items(bytes: &[u8], format: BatchFormat) -> usize {
    match format {
        BatchFormat::Ndjson => bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count(),
        BatchFormat::Json => {
            let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
            if start.is_none_or(|i| bytes[i] != b'[') {
                return 1;
            }
            // Elements of the outer array: separators at depth 1, plus one if it is not empty.
            let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
            let (mut commas, mut any) = (0usize, false);
            for &b in &bytes[start.unwrap_or(0)..] {
                if in_string {
                    match (escaped, b) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_string = true;
                        any |= depth == 1;
                    }
                    b'[' | b'{' => {
                        any |= depth == 1;
                        depth += 1;
                    }
                    b']' | b'}' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            break;
                        }
                    }
                    b',' if depth == 1 => commas += 1,
                    b if depth == 1 && !b.is_ascii_whitespace() => any = true,
                    _ => {}
                }
            }
            if any { commas + 1 } else { 0 }
        }
    }
}

/// Splits and validates a batch. A JSON body that does not parse at all is one invalid item.
pub fn parse_batch(bytes: &[u8], format: BatchFormat) -> Vec<BatchItem> {
    match format {
        BatchFormat::Json => match json::parse(bytes) {
            Ok(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| BatchItem {
                    position: Position::Index(i),
                    result: validate_value(v),
                })
                .collect(),
            Ok(v) => vec![BatchItem {
                position: Position::Single,
                result: validate_value(v),
            }],
            Err(_) => vec![BatchItem {
                position: Position::Single,
                result: validate_bytes(bytes),
            }],
        },
        BatchFormat::Ndjson => {
            let mut out = Vec::new();
            for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                out.push(BatchItem {
                    position: Position::Line(i + 1),
                    result: validate_bytes(line),
                });
            }
            if out.is_empty() {
                out.push(BatchItem {
                    position: Position::Single,
                    result: Err(InvalidEvent {
                        problems: vec![Problem {
                            path: String::new(),
                            reason: "the batch holds no events".into(),
                        }],
                    }),
                });
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, format: BatchFormat) -> String {
        parse_batch(input.as_bytes(), format)
            .iter()
            .map(|item| match &item.result {
                Ok(_) => format!("{}: ok\n", item.position),
                Err(e) => format!("{}: {}\n", item.position, e.problems[0]),
            })
            .collect()
    }

    #[test]
    fn items_are_counted_without_parsing() {
        use BatchFormat::{Json, Ndjson};
        assert_eq!(count_items(b"{}\n\n {}\r\n{}", Ndjson), 3);
        assert_eq!(count_items(&b"{}\n".repeat(1000), Ndjson), 1000);
        assert_eq!(count_items(br#"{"a":[1,2,3]}"#, Json), 1);
        assert_eq!(count_items(b" [ ] ", Json), 0);
        assert_eq!(
            count_items(br#"[{"a":"x,]\",y"},[1,2],"s",3, {"b":{"c":[4,5]}}]"#, Json),
            5
        );
        assert_eq!(count_items(b"[1,2", Json), 2);
        // The count agrees with the parse for well-formed batches.
        let body = br#"[{"schema_version":"1","event_type":"custom.x"},{"schema_version":"1","event_type":"custom.y"}]"#;
        assert_eq!(count_items(body, Json), parse_batch(body, Json).len());
    }

    #[test]
    fn framings() {
        let ev = r#"{"schema_version":"1","event_type":"custom.x"}"#;
        assert_eq!(check(ev, BatchFormat::Json), "event: ok\n");
        assert_eq!(
            check(&format!("[{ev},{{}}]"), BatchFormat::Json),
            "item 0: ok\nitem 1: event_type: required\n"
        );
        assert_eq!(
            check(
                &format!("{ev}\r\n\n{{\"schema_version\":\"1\"\n{ev}\n"),
                BatchFormat::Ndjson
            ),
            "line 1: ok\nline 3: unexpected end of input at line 1 column 22\nline 4: ok\n"
        );
        assert_eq!(
            check("\n\n", BatchFormat::Ndjson),
            "event: the batch holds no events\n"
        );
        assert_eq!(
            check("{", BatchFormat::Json),
            "event: unexpected end of input at line 1 column 2\n"
        );
    }
}
