//! What ops see: `/metrics` and `/healthz` of a running daemon against a
//! real Dovecot, through an outage and back; logs and help output that
//! carry no secrets and, at info level, no contact data.

mod common;

use std::time::Duration;

use common::mailstack::{MailStack, free_port};
use common::{Env, http_get, wait_until};

const LEADS: &str = "leads@acme.test";

fn config(stack: &MailStack, extra: &str) -> String {
    format!(
        r#"
{extra}
[[brokerages]]
id = "acme"
name = "Acme"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"
{}
  [[brokerages.agents]]
  id = "amy"
  name = "Amy"
  role = "admin"
  [[brokerages.agents]]
  id = "jane"
  name = "Jane"
"#,
        stack.imap_config(LEADS, "poll_interval = \"2s\"")
    )
}

fn lead(n: usize) -> Vec<u8> {
    format!(
        "From: Zillow <noreply@zillow.com>\r\nTo: leads@acmerealty.example\r\nSubject: New contact\r\nMessage-ID: <ops-{n}@zillow.com>\r\n\r\nName: Person {n}\r\nEmail: person{n}@example.com\r\nPhone: 555-010-{n:04}\r\n"
    )
    .into_bytes()
}

/// The value of one sample line of the exposition, e.g.
/// `leadmail_messages_total{brokerage="acme",outcome="created"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_outcomes_and_health_follows_the_inbox() {
    let stack = MailStack::start(&[LEADS], false);
    let port = free_port();
    let env = Env::with_config(&config(
        &stack,
        &format!("[http]\nlisten = \"127.0.0.1:{port}\""),
    ));
    for n in 1..=3 {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    stack.append(LEADS, "INBOX", &lead(1)); // a second copy: duplicate
    stack.append(
        LEADS,
        "INBOX",
        b"From: Zillow <noreply@zillow.com>\r\nTo: leads@acmerealty.example\r\nSubject: New contact\r\nMessage-ID: <q@zillow.com>\r\n\r\nSomeone asked about 12 Main St.\r\n",
    ); // no contact data: quarantined
    let mut daemon = env.spawn_run();

    let metrics = || http_get(port, "/metrics").map(|(_, body)| body);
    let processed = |m: &str| -> f64 {
        m.lines()
            .filter(|l| l.starts_with("leadmail_messages_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // Counted at commit; the inbox's success is recorded after the
    // acknowledgement that follows, so wait for both.
    wait_until("five messages processed", Duration::from_secs(30), || {
        metrics().is_some_and(|m| {
            processed(&m) == 5.0
                && sample(
                    &m,
                    "leadmail_inbox_last_success_timestamp_seconds{brokerage=\"acme\"}",
                )
                .is_some()
        })
    });
    let text = metrics().unwrap();
    let count = |outcome: &str| {
        sample(
            &text,
            &format!("leadmail_messages_total{{brokerage=\"acme\",outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(
        sample(&text, "leadmail_messages_fetched_total{brokerage=\"acme\"}"),
        Some(5.0)
    );
    assert_eq!(count("created"), Some(3.0), "{text}");
    assert_eq!(count("duplicate"), Some(1.0), "{text}");
    assert_eq!(count("quarantined"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            "leadmail_leads_total{brokerage=\"acme\",source=\"zillow\",kind=\"general\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "leadmail_time_to_lead_seconds_count"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "leadmail_inbox_connected{brokerage=\"acme\"}"),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "leadmail_inbox_last_success_timestamp_seconds{brokerage=\"acme\"}"
        )
        .is_some_and(|t| t > 1.7e9)
    );
    assert!(!text.contains("example.com"), "no contact data in metrics");
    assert!(text.ends_with("# EOF\n"));

    let health = || http_get(port, "/healthz");
    let (status, body) = health().unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["inboxes"][0]["brokerage"], "acme");

    // The IMAP server goes away: unhealthy, with the reason.
    stack.stop();
    wait_until("503 while IMAP is down", Duration::from_secs(30), || {
        health().is_some_and(|(s, _)| s == 503)
    });
    let (_, body) = health().unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["healthy"], false);
    assert!(
        json["inboxes"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert_eq!(
        sample(
            &metrics().unwrap(),
            "leadmail_inbox_connected{brokerage=\"acme\"}"
        ),
        Some(0.0)
    );

    // And back: healthy again once the retry succeeds.
    stack.start_again();
    wait_until("200 after IMAP returns", Duration::from_secs(60), || {
        health().is_some_and(|(s, _)| s == 200)
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// A secret is never printed: not by `--help`, `check-config`, the daemon's
/// logs at the most verbose level, nor its errors (a refused login); and a
/// password file others can read is warned about.
#[test]
fn secrets_never_appear_in_output_and_loose_password_files_are_warned_about() {
    const IMAP_SECRET: &str = "Imap-Secret-9f3a7c";
    const SMTP_SECRET: &str = "Smtp-Secret-41d2be";
    let stack = MailStack::start(&[LEADS], false);
    let base = config(&stack, "");
    // The right password first (the harness writes it), then a wrong one, readable by all.
    let password_file = stack.dir.path().join(format!("{LEADS}.pass"));
    std::fs::write(&password_file, format!("{IMAP_SECRET}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let env = Env::with_config(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = 1\ntls = \"none\"\nfrom = \"Leads <n@acme.test>\"\nusername = \"notify\"\npassword_env = \"LEADMAIL_TEST_SMTP_PASSWORD\"\n{base}"
    ));
    let run = |args: &[&str]| {
        let out = common::bin()
            .env("LEADMAIL_TEST_SMTP_PASSWORD", SMTP_SECRET)
            .env("RUST_LOG", "trace")
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let mut outputs = vec![
        run(&["--help"]),
        run(&["run", "--help"]),
        run(&["check-config"]),
    ];
    let daemon = run(&["run", "--once"]);
    assert!(
        daemon.contains("login refused"),
        "the error is reported: {daemon}"
    );
    assert!(
        daemon.contains("readable by other users"),
        "a loose password file is warned about"
    );
    outputs.push(daemon);
    for output in &outputs {
        assert!(
            !output.contains(IMAP_SECRET),
            "IMAP password printed: {output}"
        );
        assert!(
            !output.contains(SMTP_SECRET),
            "SMTP password printed: {output}"
        );
    }
}

/// At info level (the daemon's level under systemd) logs say what happened to
/// which lead, never who the lead is.
#[test]
fn info_logs_carry_no_contact_data() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, ""));
    stack.append(
        LEADS,
        "INBOX",
        b"From: Zillow <noreply@zillow.com>\r\nTo: leads@acmerealty.example\r\nSubject: New contact\r\nMessage-ID: <pii@zillow.com>\r\n\r\nName: Quentin Zebulon\r\nEmail: quentin.zebulon@example.com\r\nPhone: 555-013-7791\r\nProperty: 77 Larkspur Lane, Ann Arbor, MI 48103\r\n",
    );
    let out = common::bin()
        .env("RUST_LOG", "info")
        .arg("--config")
        .arg(&env.config)
        .args(["run", "--once"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains("Message processed"),
        "the lead is logged: {logs}"
    );
    assert!(logs.contains("lead_id=1"), "{logs}");
    for pii in [
        "Quentin",
        "Zebulon",
        "quentin.zebulon",
        "013-7791",
        "0137791",
    ] {
        assert!(!logs.contains(pii), "{pii} in info logs: {logs}");
    }
    assert_eq!(env.leads()[0]["contact"]["name"], "Quentin Zebulon");
}
