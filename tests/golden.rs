//! Golden tests for the parser: every `fixtures/emails/NAME.eml` is parsed
//! (as written and with CRLF line endings) and compared field by field with
//! `NAME.json`. A mismatch writes `NAME.failed` next to the case so that the
//! difference is one `diff` away, and the test lists every differing field.

use std::path::{Path, PathBuf};

use leadmail::parse::{ParseOptions, parse};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/emails")
}

fn to_crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 40);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Every leaf that differs, as "path: expected X, got Y".
fn diff(path: &str, expected: &Value, got: &Value, out: &mut Vec<String>) {
    match (expected, got) {
        (Value::Object(e), Value::Object(g)) => {
            for (k, ev) in e {
                diff(
                    &format!("{path}.{k}"),
                    ev,
                    g.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
            for k in g.keys().filter(|k| !e.contains_key(*k)) {
                out.push(format!("{path}.{k}: unexpected field"));
            }
        }
        _ if expected != got => out.push(format!("{path}: expected {expected}, got {got}")),
        _ => {}
    }
}

#[test]
fn every_fixture_parses_to_its_golden_json() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures/emails exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 12,
        "expected the fixture corpus, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    for eml in &cases {
        let name = eml.file_stem().unwrap().to_string_lossy().into_owned();
        let expected_path = eml.with_extension("json");
        let expected: Value = serde_json::from_str(
            &std::fs::read_to_string(&expected_path)
                .unwrap_or_else(|e| panic!("{name}: missing {}: {e}", expected_path.display())),
        )
        .unwrap_or_else(|e| panic!("{name}: bad expected JSON: {e}"));
        let raw = std::fs::read(eml).unwrap();
        let failed_path = eml.with_extension("failed");
        let mut case_failed = false;
        for (variant, bytes) in [("LF", raw.clone()), ("CRLF", to_crlf(&raw))] {
            let got = serde_json::to_value(parse(&bytes, &ParseOptions::default())).unwrap();
            let mut differences = Vec::new();
            diff("", &expected, &got, &mut differences);
            if !differences.is_empty() {
                case_failed = true;
                std::fs::write(
                    &failed_path,
                    serde_json::to_string_pretty(&got).unwrap() + "\n",
                )
                .unwrap();
                failures.push(format!(
                    "{name} ({variant}):\n    {}",
                    differences.join("\n    ")
                ));
            }
        }
        if !case_failed {
            let _ = std::fs::remove_file(&failed_path);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ (see fixtures/emails/*.failed):\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}
