//! Precision and recall of the built-in detectors over a hand-written corpus of true positives
//! and look-alikes (`tests/data/detector_corpus.jsonl`: one `{"text", "expect": [{"kind",
//! "value"}], "note"}` per line; an empty `expect` is a look-alike that must not be flagged).
//!
//! A true positive is an expected value found exactly, as a match of the expected kind: a match
//! that covers more or less than the value leaves part of it in the index or hides text that
//! was no value, so it counts as a false positive and a false negative. Every other match is a
//! false positive. `cargo test -p agentrail-vault --test detector_corpus -- --nocapture` prints
//! the table and every miss.

use agentrail_vault::{Detectors, Kind, detect};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    tp: usize,
    fp: usize,
    fn_: usize,
}

impl Count {
    fn precision(self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Per kind, and the cases that went wrong.
fn score(corpus: &str) -> (BTreeMap<&'static str, Count>, Vec<String>) {
    let mut counts: BTreeMap<&'static str, Count> = Kind::ALL
        .iter()
        .map(|k| (k.name(), Count::default()))
        .collect();
    let mut wrong = Vec::new();
    let detectors = Detectors::default();
    for (n, line) in corpus.lines().enumerate() {
        let case: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("corpus line {}: {e}", n + 1));
        let text = case["text"].as_str().expect("text");
        let mut expected: Vec<(String, String)> = case["expect"]
            .as_array()
            .expect("expect")
            .iter()
            .map(|e| {
                let kind = e["kind"].as_str().expect("kind");
                assert!(Kind::parse(kind).is_some(), "line {}: kind {kind}", n + 1);
                (
                    kind.to_owned(),
                    e["value"].as_str().expect("value").to_owned(),
                )
            })
            .collect();
        for m in detect(text, &detectors) {
            let got = (m.kind.name().to_owned(), text[m.start..m.end].to_owned());
            let c = counts.get_mut(m.kind.name()).expect("every kind counted");
            if let Some(i) = expected.iter().position(|e| *e == got) {
                expected.swap_remove(i);
                c.tp += 1;
            } else {
                c.fp += 1;
                wrong.push(format!(
                    "FP {} {:?} in {text:?} ({})",
                    got.0, got.1, case["note"]
                ));
            }
        }
        for (kind, value) in expected {
            let c = counts.get_mut(kind.as_str()).expect("kind checked above");
            c.fn_ += 1;
            wrong.push(format!(
                "FN {kind} {value:?} in {text:?} ({})",
                case["note"]
            ));
        }
    }
    (counts, wrong)
}

#[test]
fn detectors_meet_their_precision_and_recall_floors() {
    let corpus = include_str!("data/detector_corpus.jsonl");
    let cases = corpus.lines().count();
    assert!(cases >= 200, "the corpus has {cases} cases");
    let (counts, wrong) = score(corpus);
    let total = counts.values().fold(Count::default(), |a, c| Count {
        tp: a.tp + c.tp,
        fp: a.fp + c.fp,
        fn_: a.fn_ + c.fn_,
    });
    println!("detector corpus: {cases} cases");
    println!("| kind | TP | FP | FN | precision | recall |");
    println!("|---|---|---|---|---|---|");
    for (kind, c) in counts.iter().chain([(&"all", &total)]) {
        println!(
            "| {kind} | {} | {} | {} | {:.3} | {:.3} |",
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall()
        );
    }
    for w in &wrong {
        println!("{w}");
    }
    // Today every kind scores 1.000 precision and recall (156 expected values, 0 false
    // positives; prose `password is x`, `--password x` flags, dash-grouped IBANs and
    // `user@host:path` were added as cases and fixed). The first run of this corpus, before the detectors were fixed for what it
    // found (A-label TLDs, `sprite@2x.png`, phone numbers inside failed IBANs and SSNs,
    // `std::vector`, `&` in passwords, URL credentials, `pwd: /path`, `1.2.3.4-beta`), scored
    // 0.935 precision and 0.979 recall overall. The floors allow a case or two per kind at
    // most, so a detector that starts missing or over-matching fails here.
    let floors: [(&str, f64, f64); 8] = [
        ("all", 0.97, 0.97),
        ("secret", 0.95, 0.95),
        ("email", 0.95, 0.95),
        ("card", 0.95, 0.95),
        ("iban", 0.95, 0.95),
        ("phone", 0.90, 0.90),
        ("ssn", 0.75, 0.75),
        ("ip", 0.90, 0.90),
    ];
    for (kind, precision, recall) in floors {
        let c = if kind == "all" { total } else { counts[kind] };
        assert!(
            c.precision() >= precision && c.recall() >= recall,
            "{kind}: precision {:.3} (floor {precision}), recall {:.3} (floor {recall})",
            c.precision(),
            c.recall()
        );
    }
}
