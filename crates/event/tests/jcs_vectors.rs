//! RFC 8785 interop: the cyberphone/json-canonicalization test data, byte for byte, and ES number
//! formatting differentially against node's own `Number#toString`.

use agentrail_event::json::{canonicalize, to_canonical_vec};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const VECTORS: &str = "../../../shared/testdata/jcs-cyberphone";

#[test]
fn cyberphone_vectors_canonicalize_byte_for_byte() {
    let input_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(VECTORS)
        .join("input");
    let mut names: Vec<_> = std::fs::read_dir(&input_dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", input_dir.display()))
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "expected the six cyberphone input files");
    for name in names {
        let input = std::fs::read(input_dir.join(&name)).unwrap();
        let want = std::fs::read(input_dir.join("../output").join(&name)).unwrap();
        let hex_want = std::fs::read_to_string(
            input_dir
                .join("../outhex")
                .join(&name)
                .with_extension("txt"),
        )
        .unwrap();
        let got = canonicalize(&input).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{name:?} differs from the expected output"
        );
        let hex_got: String = got.iter().map(|b| format!("{b:02x}")).collect();
        let hex_want: String = hex_want.split_whitespace().collect();
        assert_eq!(hex_got, hex_want, "{name:?} differs from outhex");
        // Canonical output is a fixed point.
        assert_eq!(
            canonicalize(&got).unwrap(),
            got,
            "{name:?} is not idempotent"
        );
    }
}

/// 100,000 doubles from a deterministic generator (bit patterns over the whole range, plus values
/// near integers and near the ES format boundaries 1e-7 and 1e21), formatted by us and by node.
#[test]
fn number_formatting_matches_node() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut values = Vec::new();
    while values.len() < 100_000 {
        let r = next();
        let f = match values.len() % 4 {
            0 => f64::from_bits(r),
            1 => (r >> 11) as f64 / (1u64 << 20) as f64,
            2 => f64::from_bits(r) % 1e22,
            _ => 10f64.powi((r % 40) as i32 - 20) * (1.0 + (r >> 40) as f64 / 1e7),
        };
        if f.is_finite() {
            values.push(f);
        }
    }
    let script = r#"
        const lines = require('fs').readFileSync(0, 'utf8').trim().split('\n');
        const buf = Buffer.alloc(8);
        const out = lines.map(h => { buf.writeBigUInt64BE(BigInt('0x' + h)); return String(buf.readDoubleBE(0)); });
        process.stdout.write(out.join('\n') + '\n');
    "#;
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed (it is on this machine kind) for the ES number oracle");
    let input: String = values
        .iter()
        .map(|f| format!("{:016x}\n", f.to_bits()))
        .collect();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "node failed");
    let node_out = String::from_utf8(output.stdout).unwrap();
    let node_lines: Vec<&str> = node_out.lines().collect();
    assert_eq!(node_lines.len(), values.len());
    for (f, want) in values.iter().zip(node_lines) {
        let v = serde_json::Value::from(*f);
        let got = to_canonical_vec(&v).unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            want,
            "bits {:016x}",
            f.to_bits()
        );
    }
}
