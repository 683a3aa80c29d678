//! The daemon against a real Dovecot: exactly-once ingest, acknowledgement
//! after commit, IDLE, several inboxes, crashes, restarts, UIDVALIDITY
//! changes and shutdown. Each test runs its own private mail stack.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::mailstack::MailStack;
use common::{Env, wait_until};

const LEADS: &str = "leads@acme.test";
// Dovecot (Maildir++) separates levels with "."; leadmail is configured with "Leads/Processed".

fn config(stack: &MailStack, imap_extra: &str) -> String {
    format!(
        r#"
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
  emails = ["jane@acmerealty.example"]
  [[brokerages.agents]]
  id = "bob"
  name = "Bob"
"#,
        stack.imap_config(LEADS, imap_extra)
    )
}

/// A distinct lead message (a different person each time).
fn lead(n: usize) -> Vec<u8> {
    format!(
        "From: Site <noreply@site.example>\r\nTo: someone-else@example.com\r\nSubject: Inquiry {n}\r\nMessage-ID: <lead-{n}@site.example>\r\n\r\nName: Person {n}\r\nEmail: person{n}@example.com\r\nPhone: 555-010-{:04}\r\n",
        n % 10_000
    )
    .into_bytes()
}

fn lead_count(env: &Env) -> usize {
    env.leads().len()
}

fn run_once(env: &Env) -> std::process::Output {
    env.run(&["run", "--once"])
}

fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = common::root().join("fixtures/emails");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    v.sort();
    v
}

#[test]
fn run_once_stores_every_lead_once_and_files_every_message() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, ""));
    let files = fixtures();
    for f in &files {
        stack.append(LEADS, "INBOX", &std::fs::read(f).unwrap());
    }
    let out = run_once(&env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every message left the inbox: quarantined ones to the quarantine folder.
    assert_eq!(stack.count(LEADS, "INBOX"), 0);
    let quarantined = env
        .ok(&["quarantine", "list", "--format", "json"])
        .lines()
        .count();
    assert!(
        quarantined >= 1,
        "the fixture without contact data is quarantined"
    );
    assert_eq!(stack.count(LEADS, "Leads.Quarantine"), quarantined);
    assert_eq!(
        stack.count(LEADS, "Leads.Processed"),
        files.len() - quarantined
    );
    let leads = lead_count(&env);
    assert!(leads >= 50, "{leads}");

    // The same messages again (a resend, a second copy): nothing new.
    for f in &files {
        stack.append(LEADS, "INBOX", &std::fs::read(f).unwrap());
    }
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), leads);
    assert_eq!(stack.count(LEADS, "INBOX"), 0);
    assert_eq!(stack.count(LEADS, "Leads.Quarantine"), 2 * quarantined);

    let status = env.ok(&["status", "--format", "json"]);
    let s: serde_json::Value = serde_json::from_str(status.lines().next().unwrap()).unwrap();
    assert_eq!(s["brokerage"], "acme");
    assert_eq!(s["processed"], 2 * files.len());
    assert!(s["last_success"].is_string());
    assert_eq!(s["quarantined"], quarantined);
}

#[test]
fn idle_picks_up_a_new_message_and_sigterm_exits_cleanly() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, "  poll_interval = \"10m\""));
    assert!(env.run(&["migrate"]).status.success());
    let mut child = env.spawn_run();
    // Connected and idle before the message arrives.
    wait_until("the inbox to connect", Duration::from_secs(20), || {
        env.ok(&["status", "--format", "json"])
            .contains("\"connected\":true")
    });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    stack.append(LEADS, "INBOX", &lead(1));
    wait_until("the lead", Duration::from_secs(10), || {
        lead_count(&env) == 1
    });
    let took = sent.elapsed();
    eprintln!("IDLE delivery to lead: {took:?}");
    wait_until("the acknowledgement", Duration::from_secs(5), || {
        stack.count(LEADS, "Leads.Processed") == 1
    });

    sigterm(&child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn a_broken_inbox_does_not_stop_the_others() {
    let stack = MailStack::start(&[LEADS, "other@acme.test"], false);
    let good = config(&stack, "");
    let bad_file = stack.dir.path().join("wrong.pass");
    std::fs::write(&bad_file, "wrong\n").unwrap();
    let second = format!(
        r#"
[[brokerages]]
id = "beta"
name = "Beta"
lead_addresses = ["leads@beta.example"]
default_owner = "zoe"
  [brokerages.imap]
  host = "127.0.0.1"
  port = {}
  tls = "implicit"
  ca_file = "{}"
  username = "other@acme.test"
  password_file = "{}"
  [[brokerages.agents]]
  id = "zoe"
  name = "Zoe"
"#,
        stack.imaps_port,
        stack.cert.display(),
        bad_file.display()
    );
    let env = Env::with_config(&format!("{good}\n{second}"));
    for n in 0..5 {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    stack.append("other@acme.test", "INBOX", &lead(99));
    let out = run_once(&env);
    assert!(!out.status.success(), "a failed inbox makes --once fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("beta"));
    assert_eq!(lead_count(&env), 5, "the good inbox was processed");
    assert_eq!(
        stack.count("other@acme.test", "INBOX"),
        1,
        "nothing lost in the bad one"
    );
    let status = env.ok(&["status", "--format", "json"]);
    let beta: serde_json::Value = status
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|s| s["brokerage"] == "beta")
        .unwrap();
    assert!(
        beta["last_error"].as_str().unwrap().contains("login"),
        "{beta}"
    );
}

#[test]
fn kill_9_mid_batch_never_loses_or_doubles_a_lead() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, ""));
    let total = 240;
    for n in 0..total {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    assert!(env.run(&["migrate"]).status.success());
    // Kill at a few different points of the backlog.
    for stop_after in [20, 90, 160] {
        let mut child = env.spawn_run();
        wait_until("progress", Duration::from_secs(60), || {
            lead_count(&env) >= stop_after
        });
        kill9(&mut child);
    }
    env.ok(&["run", "--once"]);
    assert_eq!(lead_count(&env), total, "every lead exactly once");
    assert_eq!(stack.count(LEADS, "INBOX"), 0, "nothing left behind");
    assert_eq!(stack.count(LEADS, "Leads.Processed"), total);
}

#[test]
fn sigterm_during_a_batch_loses_nothing() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, ""));
    let total = 150;
    for n in 0..total {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    assert!(env.run(&["migrate"]).status.success());
    let mut child = env.spawn_run();
    wait_until("progress", Duration::from_secs(60), || {
        lead_count(&env) >= 10
    });
    sigterm(&child);
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), total);
    assert_eq!(stack.count(LEADS, "INBOX"), 0);
}

#[test]
fn dovecot_restart_is_survived() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, ""));
    assert!(env.run(&["migrate"]).status.success());
    let mut child = env.spawn_run();
    stack.append(LEADS, "INBOX", &lead(1));
    wait_until("the first lead", Duration::from_secs(20), || {
        lead_count(&env) == 1
    });
    stack.restart();
    stack.append(LEADS, "INBOX", &lead(2));
    wait_until(
        "the lead after the restart",
        Duration::from_secs(30),
        || lead_count(&env) == 2,
    );
    sigterm(&child);
    let _ = child.wait();
    kill9(&mut child);
}

#[test]
fn uidvalidity_change_creates_no_duplicates() {
    let stack = MailStack::start(&[LEADS], false);
    stack.create_mailbox(LEADS, "Incoming");
    let env = Env::with_config(&config(&stack, "  mailbox = \"Incoming\""));
    for n in 0..10 {
        stack.append(LEADS, "Incoming", &lead(n));
    }
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), 10);
    // The mailbox is recreated (new UIDVALIDITY) and the same mail lands again.
    stack.delete_mailbox(LEADS, "Incoming");
    stack.create_mailbox(LEADS, "Incoming");
    for n in 0..10 {
        stack.append(LEADS, "Incoming", &lead(n));
    }
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), 10);
    assert_eq!(stack.count(LEADS, "Incoming"), 0);
}

#[test]
fn flag_mode_leaves_messages_in_place_and_never_reprocesses() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, "  after = \"flag\""));
    for n in 0..3 {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), 3);
    assert_eq!(stack.count(LEADS, "INBOX"), 3, "flagged, not moved");
    stack.append(LEADS, "INBOX", &lead(3));
    let out = env.ok(&["run", "--once"]);
    assert!(out.contains("processed 1 messages"), "{out}");
    assert_eq!(lead_count(&env), 4);
}

#[test]
fn oversized_messages_are_quarantined_with_bounded_memory() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, "  max_message_bytes = 5000"));
    let mut big = lead(1);
    big.extend(std::iter::repeat_n(b'x', 20_000));
    stack.append(LEADS, "INBOX", &big);
    stack.append(LEADS, "INBOX", &lead(2));
    assert!(run_once(&env).status.success());
    assert_eq!(lead_count(&env), 1);
    assert_eq!(stack.count(LEADS, "Leads.Quarantine"), 1);
    let q = env.ok(&["quarantine", "list", "--format", "json"]);
    assert!(q.contains("oversized"), "{q}");
}

/// A backlog of large messages is worked a few at a time: memory follows
/// `max_batch_bytes`, not the backlog (ten 8 MB leads, one batch each).
#[test]
fn a_backlog_of_large_messages_is_held_a_batch_budget_at_a_time() {
    const LARGE: usize = 10;
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&config(&stack, "  max_batch_bytes = 4194304"));
    let line = format!("{}\r\n", "QUJD".repeat(19));
    let attachment = line.repeat((8 << 20) / line.len() + 1);
    let messages: Vec<Vec<u8>> = (0..LARGE)
        .map(|n| {
            format!(
                "From: Site <noreply@site.example>\r\nTo: leads@acmerealty.example\r\nSubject: Inquiry {n}\r\nMessage-ID: <large-{n}@site.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nName: Person {n}\r\nEmail: large{n}@example.com\r\nPhone: 555-010-{n:04}\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{attachment}--b--\r\n"
            )
            .into_bytes()
        })
        .collect();
    assert!(messages[0].len() > 8 << 20);
    stack.fill(LEADS, &messages);
    drop(messages);

    env.ok(&["run", "--once"]);
    assert_eq!(lead_count(&env), LARGE, "every large lead stored");
    assert_eq!(stack.count(LEADS, "INBOX"), 0, "and acknowledged");
    // All ten in one batch would hold 80 MB twice over (the server's answer
    // and the messages) on top of the ~60 MB baseline.
    let peak = common::children_peak_rss();
    eprintln!("peak RSS of leadmail: {} MB", peak >> 20);
    assert!(peak < 136 << 20, "peak RSS {} MB", peak >> 20);
}

#[test]
fn run_without_inboxes_says_so_and_only_delivers() {
    let env = Env::new();
    let out = env.run(&["run", "--once"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("imap"));
}

/// Two instances on one database and one inbox: exactly one works it (the
/// lease holder, shown by `status`); when it dies, the other takes the inbox
/// over within the lease time, and every lead exists once.
#[test]
fn one_instance_works_an_inbox_and_another_takes_over_when_it_dies() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&format!(
        "[daemon]\nlease = \"2s\"\n{}",
        config(&stack, "  poll_interval = \"1s\"")
    ));
    assert!(env.run(&["migrate"]).status.success());
    let spawn = |name: &str| {
        common::bin()
            .env("LEADMAIL__DAEMON__INSTANCE", name)
            .arg("--config")
            .arg(&env.config)
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let holder = || -> Option<String> {
        let out = env.ok(&["status", "--format", "json"]);
        let first: serde_json::Value = serde_json::from_str(out.lines().next()?).ok()?;
        first["lease"]["holder"].as_str().map(str::to_string)
    };
    let mut alpha = spawn("alpha");
    wait_until("alpha holds the inbox", Duration::from_secs(20), || {
        holder().as_deref() == Some("alpha")
    });
    let mut beta = spawn("beta");
    for n in 0..30 {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    wait_until("the first 30", Duration::from_secs(30), || {
        lead_count(&env) == 30 && stack.count(LEADS, "INBOX") == 0
    });
    assert_eq!(holder().as_deref(), Some("alpha"), "beta stands by");

    kill9(&mut alpha);
    for n in 30..60 {
        stack.append(LEADS, "INBOX", &lead(n));
    }
    let start = Instant::now();
    wait_until("beta takes over", Duration::from_secs(20), || {
        holder().as_deref() == Some("beta")
    });
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "within the lease time"
    );
    wait_until("the next 30", Duration::from_secs(30), || {
        lead_count(&env) == 60 && stack.count(LEADS, "INBOX") == 0
    });
    assert_eq!(stack.count(LEADS, "Leads.Processed"), 60);

    // A one-off run while beta is alive does not fight it for the inbox.
    let out = run_once(&env);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("worked by another instance (beta)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A clean stop gives the lease up at once.
    sigterm(&beta);
    assert!(beta.wait().unwrap().success());
    assert_eq!(holder(), None);
    assert_eq!(lead_count(&env), 60);
}
