//! End-to-end tests of the `leadmail` binary on the fixture corpus, each
//! against a fresh SQLite file in a temporary directory.

mod common;

use std::path::PathBuf;

use common::{Env, bin, json_lines, root};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    root().join("fixtures/emails")
}

/// The expected verdict of each fixture, from its golden file.
fn expected_verdicts() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let golden: Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                golden["verdict"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ingest_creates_one_lead_per_lead_message_and_a_rerun_creates_none() {
    let env = Env::new();
    let first = env.ingest_json(&[&fixture_dir()]);
    let expected = expected_verdicts();
    assert_eq!(first.len(), expected.len());
    for (row, (name, verdict)) in first.iter().zip(&expected) {
        assert!(row["input"].as_str().unwrap().contains(name.as_str()));
        let outcome = row["outcome"].as_str().unwrap();
        match verdict.as_str() {
            "lead" if outcome == "repeat" => {
                // The same person asked before (e.g. a reply): attached to the earlier lead.
                let earlier = first
                    .iter()
                    .take_while(|r| r["input"] != row["input"])
                    .any(|r| r["outcome"] == "created" && r["lead_id"] == row["lead_id"]);
                assert!(earlier, "{name}: a repeat points at an earlier lead: {row}");
            }
            "lead" => {
                assert_eq!(outcome, "created", "{name}: {row}");
                assert!(row["lead_id"].is_i64());
                assert_eq!(row["brokerage"], "acme");
                let routing = &row["routing"];
                assert!(
                    routing["owner"].is_string() && routing["user"].is_string(),
                    "{row}"
                );
            }
            "ignored" => {
                assert_eq!(outcome, "ignored", "{name}: {row}");
                assert!(row["reason"].is_string());
                assert!(row["lead_id"].is_null());
            }
            "unparseable" => {
                assert_eq!(
                    outcome, "quarantined",
                    "{name}: kept for replay, not dropped"
                );
                assert!(row["reason"].is_string());
            }
            other => panic!("unexpected verdict {other}"),
        }
    }
    let lead_count = first.iter().filter(|r| r["outcome"] == "created").count();
    let repeats = first.iter().filter(|r| r["outcome"] == "repeat").count();
    assert!(
        repeats <= 2,
        "only the fixtures that re-ask are repeats: {repeats}"
    );
    assert_eq!(env.leads().len(), lead_count);

    let second = env.ingest_json(&[&fixture_dir()]);
    assert!(
        second.iter().all(|r| r["outcome"] == "duplicate"),
        "{second:?}"
    );
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(
            a["lead_id"], b["lead_id"],
            "a duplicate points at the original lead"
        );
    }
    assert_eq!(env.leads().len(), lead_count, "no lead is created twice");
}

#[test]
fn forwarded_leads_go_to_the_forwarding_agent_and_others_rotate() {
    let env = Env::new();
    let rows = env.ingest_json(&[&fixture_dir()]);
    let by_name = |n: &str| {
        rows.iter()
            .find(|r| r["input"].as_str().unwrap().contains(n))
            .unwrap()
            .clone()
    };
    for (fixture, agent) in [
        ("05-gmail-forward", "jane"),
        ("06-outlook-forward", "bob"),
        ("12-apple-mail-forward", "cara"),
    ] {
        let r = by_name(fixture);
        assert_eq!(r["routing"]["kind"], "direct", "{r}");
        assert_eq!(r["routing"]["owner"], agent);
        assert_eq!(r["routing"]["user"], agent);
    }
    // General leads of the demo's catch-all rule go round the three agents
    // in turn; the admin gets none.
    let general: Vec<String> = rows
        .iter()
        .filter(|r| r["routing"]["rule"] == "everyone")
        .map(|r| r["routing"]["user"].as_str().unwrap().to_string())
        .collect();
    assert!(general.len() >= 6);
    for window in general.windows(3) {
        let mut w = window.to_vec();
        w.sort();
        assert_eq!(w, ["bob", "cara", "jane"], "rotation broke: {general:?}");
    }
}

#[test]
fn unknown_recipient_is_quarantined_and_kept_and_brokerage_flag_overrides() {
    let env = Env::new();
    let msg = env.dir.path().join("stray.eml");
    std::fs::write(
        &msg,
        "From: Ann Lee <ann.lee@example.com>\nTo: someone@elsewhere.example\nSubject: hi\nMessage-ID: <stray-1@example.com>\n\nCall me at 555-010-1111\n",
    )
    .unwrap();
    let rows = env.ingest_json(&[&msg]);
    assert_eq!(rows[0]["outcome"], "quarantined");
    assert!(rows[0]["reason"].as_str().unwrap().contains("brokerage"));
    assert!(env.leads().is_empty());

    let out = env.run(&[
        "ingest",
        "--format",
        "json",
        "--brokerage",
        "acme",
        msg.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let rows = json_lines(&out.stdout);
    assert_eq!(rows[0]["outcome"], "created", "{rows:?}");
    assert_eq!(rows[0]["brokerage"], "acme");
    assert_eq!(env.leads().len(), 1);
}

#[test]
fn message_without_contact_data_is_quarantined_not_dropped() {
    let env = Env::new();
    let msg = env.dir.path().join("empty.eml");
    std::fs::write(
        &msg,
        "From: Web Form <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: New inquiry\nMessage-ID: <nodata-1@site.example>\n\nSomeone submitted the form without details.\n",
    )
    .unwrap();
    let rows = env.ingest_json(&[&msg]);
    assert_eq!(rows[0]["outcome"], "quarantined");
    assert_eq!(rows[0]["reason"], "no contact data");
    // Kept: a second ingest recognises it.
    let rows = env.ingest_json(&[&msg]);
    assert_eq!(rows[0]["outcome"], "duplicate");
}

#[test]
fn messages_without_message_id_dedupe_by_content() {
    let env = Env::new();
    let a = env.dir.path().join("a.eml");
    let b = env.dir.path().join("b.eml");
    let text = "From: Ann Lee <ann.lee@example.com>\nTo: leads@acmerealty.example\nSubject: tour\n\nPhone: 555-010-1212\n";
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, text).unwrap();
    let rows = env.ingest_json(&[&a, &b]);
    assert_eq!(rows[0]["outcome"], "created");
    assert_eq!(rows[1]["outcome"], "duplicate");
}

#[test]
fn leads_show_has_owner_user_history_and_trace() {
    let env = Env::new();
    env.ingest_json(&[&fixture_dir().join("05-gmail-forward.eml")]);
    let out = env.run(&["leads", "show", "1", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lead: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lead["owner"], "jane");
    assert_eq!(lead["user"], "jane");
    assert_eq!(lead["kind"], "direct");
    assert_eq!(lead["contact"]["email"], "dana.whitfield@example.com");
    let kinds: Vec<&str> = lead["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "routed"]);
    assert_eq!(lead["trace"]["owner"], "jane");

    let missing = env.run(&["leads", "show", "99"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no lead with id 99"));
}

#[test]
fn concurrent_ingests_keep_the_rotation_fair() {
    let env = Env::new();
    // Initialise the database first, as a deployment would.
    assert!(env.run(&["migrate"]).status.success());
    let batches: Vec<PathBuf> = (0..4)
        .map(|p| {
            let dir = env.dir.path().join(format!("batch{p}"));
            std::fs::create_dir(&dir).unwrap();
            for i in 0..6 {
                std::fs::write(
                    dir.join(format!("{i}.eml")),
                    format!(
                        "From: Person {p}{i} <p{p}x{i}@example.com>\nTo: leads@acmerealty.example\nSubject: inquiry\nMessage-ID: <c-{p}-{i}@example.com>\n\nPhone: 555-010-{p}{i:03}\n"
                    ),
                )
                .unwrap();
            }
            dir
        })
        .collect();
    let children: Vec<_> = batches
        .iter()
        .map(|dir| {
            bin()
                .arg("--config")
                .arg(&env.config)
                .args(["ingest", "--format", "json"])
                .arg(dir)
                .current_dir(env.dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let leads = env.leads();
    assert_eq!(leads.len(), 24);
    let count = |agent: &str| leads.iter().filter(|l| l["user"] == agent).count();
    assert_eq!((count("jane"), count("bob"), count("cara")), (8, 8, 8));
}

#[test]
fn parse_never_fails_on_readable_garbage() {
    let env = Env::new();
    for (name, bytes) in [
        ("empty.eml", Vec::new()),
        (
            "binary.eml",
            (0u8..=255).cycle().take(5000).collect::<Vec<u8>>(),
        ),
        ("headers-only.eml", b"From: x\nSubject: y\n".to_vec()),
    ] {
        let path = env.dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = env.run(&["parse", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_ne!(v["verdict"], "lead", "{name}");
        assert!(v["reason"].is_string(), "{name}: a non-lead says why");
    }
}

#[test]
fn parse_reports_unreadable_input_on_one_line() {
    let out = bin()
        .args(["parse", "/nonexistent/lead.eml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/lead.eml"));
}

#[test]
fn parse_reads_stdin() {
    use std::io::Write;
    let mut child = bin()
        .args(["parse", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let raw = std::fs::read(fixture_dir().join("01-realtor-com.eml")).unwrap();
    child.stdin.take().unwrap().write_all(&raw).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["contact"]["phone"], "+15550104127");
}

#[test]
fn check_config_names_the_bad_key() {
    let env = Env::new();
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace("default_owner = \"amy\"", "default_owner = \"nobody\""),
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("brokerages[0].default_owner"), "{err}");

    std::fs::write(
        &env.config,
        text.replace("[parse]", "[parse]\nregion_typo = 1"),
    )
    .unwrap();
    let out = env.run(&["check-config"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("region_typo"));
}

#[test]
fn check_config_prints_the_effective_configuration_with_env_overrides() {
    let env = Env::new();
    let check_with_url = |url: &str| {
        bin()
            .arg("--config")
            .arg(&env.config)
            .arg("check-config")
            .env("LEADMAIL__DATABASE__URL", url)
            .output()
            .unwrap()
    };
    // A PostgreSQL URL is accepted and shown with its password redacted.
    let out = check_with_url("postgres://lead:hunter2@db.example/leads");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("db.example/leads"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    // Another scheme is refused with the key named, password never shown.
    let out = check_with_url("mysql://lead:hunter2@db.example/leads");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(all.contains("database.url"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");

    let out = env.run(&["check-config"]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("leads@acmerealty.example"));
    assert!(shown.contains("default_region = \"US\""));
}

#[test]
fn quarantined_messages_are_listed_and_replayed_after_a_fix() {
    let env = Env::new();
    let msg = env.message(
        "stray.eml",
        "From: Ann Lee <ann.lee@example.com>\nTo: leads@newdomain.example\nSubject: hi\nMessage-ID: <stray-2@example.com>\n\nCall me at 555-010-2121\n",
    );
    let rows = env.ingest_json(&[&msg]);
    assert_eq!(rows[0]["outcome"], "quarantined");
    let list = env.ok(&["quarantine", "list", "--format", "json"]);
    let q: Value = serde_json::from_str(list.lines().next().unwrap()).unwrap();
    assert!(q["reason"].as_str().unwrap().contains("no brokerage"));
    let id = q["id"].as_i64().unwrap().to_string();

    // Replaying without a fix changes nothing.
    let again: Value = serde_json::from_str(
        env.ok(&["quarantine", "replay", &id, "--format", "json"])
            .trim(),
    )
    .unwrap();
    assert_eq!(again["outcome"], "quarantined");

    // The brokerage adds the address; the replay makes the lead, once.
    let text = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        text.replace(
            "lead_addresses = [\"leads@acmerealty.example\"]",
            "lead_addresses = [\"leads@acmerealty.example\", \"leads@newdomain.example\"]",
        ),
    )
    .unwrap();
    let fixed: Value = serde_json::from_str(
        env.ok(&["quarantine", "replay", "--all", "--format", "json"])
            .trim(),
    )
    .unwrap();
    assert_eq!(fixed["outcome"], "created", "{fixed}");
    assert_eq!(env.leads().len(), 1);
    assert!(
        env.ok(&["quarantine", "list", "--format", "json"])
            .trim()
            .is_empty()
    );
    let not_quarantined = env.run(&["quarantine", "replay", &id]);
    assert!(!not_quarantined.status.success());
    // And the original file read again is a duplicate of that lead.
    assert_eq!(env.ingest_json(&[&msg])[0]["outcome"], "duplicate");
}

#[cfg(unix)]
#[test]
fn the_database_is_readable_by_its_owner_only() {
    if !common::on_sqlite() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    env.ok(&["migrate"]);
    let db_dir = env.dir.path().join("db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db_dir), 0o700);
    assert_eq!(mode(&db_dir.join("leads.db")), 0o600);
}
