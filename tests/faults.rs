//! Faults against the real servers: an IMAP server that stalls mid-FETCH,
//! answers NO or BAD, drops the connection or crawls; a database on a full
//! filesystem or a PostgreSQL server stopped; kill -9 again and again while
//! a backlog drains. In every case
//! nothing is acknowledged before it is committed, and every lead (and its
//! notification) exists exactly once at the end.

mod common;

use std::time::Duration;

use common::faultproxy::{Fault, FaultProxy};
use common::mailstack::MailStack;
use common::{Env, wait_until};

const LEADS: &str = "leads@acme.test";

fn brokerage(imap: &str) -> String {
    format!(
        r#"
[[brokerages]]
id = "acme"
name = "Acme"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"
{imap}
  [[brokerages.agents]]
  id = "amy"
  name = "Amy"
  role = "admin"
  emails = ["amy@acme.test"]
  [[brokerages.agents]]
  id = "jane"
  name = "Jane"
  emails = ["jane@acme.test"]
  [[brokerages.agents]]
  id = "bob"
  name = "Bob"
  emails = ["bob@acme.test"]
"#
    )
}

/// A distinct lead message, padded to about `pad` bytes.
fn lead(n: usize, pad: usize) -> Vec<u8> {
    format!(
        "From: Site <noreply@site.example>\r\nTo: leads@acmerealty.example\r\nSubject: Inquiry {n}\r\nMessage-ID: <fault-{n}@site.example>\r\n\r\nName: Person {n}\r\nEmail: person{n}@example.com\r\nPhone: 555-010-{:04}\r\nMessage: {}\r\n",
        n % 10_000,
        "I would like to see the house. ".repeat(pad / 31 + 1)
    )
    .into_bytes()
}

/// While the database cannot commit: the `waiting` messages are all still
/// in INBOX (nothing acknowledged) and the daemon is still running.
fn assert_held_back(stack: &MailStack, waiting: usize, daemon: &mut std::process::Child) {
    assert_eq!(
        stack.count(LEADS, "INBOX"),
        waiting,
        "nothing is acknowledged while it cannot be committed"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon keeps retrying"
    );
}

/// `leadmail run` with the test's configuration, through `command` (the
/// binary, or a wrapper whose arguments end with it), logging at info into
/// the test directory's daemon.log.
fn spawn_logged_run(
    mut command: std::process::Command,
    env: &Env,
) -> std::io::Result<std::process::Child> {
    command
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(env.dir.path().join("daemon.log"))?)
        .spawn()
}

fn lead_count(env: &Env) -> usize {
    env.leads().len()
}

/// The daemon reads Dovecot through the proxy (plain IMAP on loopback).
#[test]
fn imap_faults_are_survived_without_loss_or_duplicates() {
    let stack = MailStack::start(&[LEADS], false);
    let proxy = FaultProxy::start(stack.imap_port);
    let imap = stack
        .imap_config(LEADS, "  poll_interval = \"1s\"\n  timeout = \"2s\"")
        .replace(
            &format!("port = {}", stack.imaps_port),
            &format!("port = {}", proxy.port),
        )
        .replace("tls = \"implicit\"", "tls = \"none\"");
    let env = Env::with_config(&brokerage(&imap));
    let mut daemon = env.spawn_run();
    let mut next = 0;
    let mut deliver = |count: usize| {
        for _ in 0..count {
            next += 1;
            stack.append(LEADS, "INBOX", &lead(next, 2000));
        }
        next
    };
    let all_done = |total: usize| {
        wait_until(
            &format!("{total} leads stored and filed"),
            Duration::from_secs(60),
            || stack.count(LEADS, "INBOX") == 0 && lead_count(&env) == total,
        );
    };
    all_done(deliver(2));

    let cases = [
        (
            "stall mid-FETCH",
            Fault::Stall {
                command: "BODY.PEEK[]",
                after: 300,
            },
        ),
        (
            "NO to FETCH",
            Fault::Answer {
                command: "BODY.PEEK[]",
                answer: "NO [UNAVAILABLE] injected",
            },
        ),
        (
            "BAD to MOVE",
            Fault::Answer {
                command: "UID MOVE",
                answer: "BAD injected",
            },
        ),
    ];
    for (what, fault) in cases {
        let fired = proxy.fired();
        let connections = proxy.accepted();
        proxy.set(fault);
        let total = deliver(3);
        all_done(total);
        assert_eq!(proxy.fired(), fired + 1, "{what}: the fault fired");
        assert!(
            proxy.accepted() > connections,
            "{what}: the connection was replaced"
        );
    }

    // The network drops every connection (in IDLE).
    let connections = proxy.accepted();
    proxy.drop_connections();
    let total = deliver(3);
    all_done(total);
    assert!(proxy.accepted() > connections, "reconnected after the drop");

    // A crawling link: slow is not stalled, so nothing times out.
    let connections = proxy.accepted();
    proxy.set(Fault::Slow {
        chunk: 512,
        pause: Duration::from_millis(20),
    });
    let total = deliver(10);
    all_done(total);
    proxy.clear();
    assert_eq!(proxy.accepted(), connections, "a slow link is not dropped");

    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(stack.count(LEADS, "Leads.Processed"), total);
    let emails: std::collections::BTreeSet<String> = env
        .leads()
        .iter()
        .map(|l| l["contact"]["email"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(emails.len(), total, "one lead per person");
}

/// SQLite on a filesystem that fills up: the daemon runs in a private mount
/// namespace with its database directory on a small tmpfs, which the test
/// fills through `/proc/<pid>/root`.
#[test]
fn a_full_disk_acknowledges_nothing_and_catches_up_when_space_returns() {
    if !common::on_sqlite() {
        return;
    }
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config(&brokerage(
        &stack.imap_config(LEADS, "  poll_interval = \"1s\""),
    ));
    let db_dir = env.dir.path().join("db");
    std::fs::create_dir_all(&db_dir).unwrap();
    let mut unshare = std::process::Command::new("unshare");
    unshare
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=8m,mode=0700 tmpfs \"$0\" && exec \"$@\"",
        ])
        .arg(&db_dir)
        .arg(env!("CARGO_BIN_EXE_leadmail"));
    let mut daemon = spawn_logged_run(unshare, &env)
        .expect("unshare (util-linux) runs the daemon in its own mount namespace");
    let daemon_pid = daemon.id();
    // The daemon's view of its database directory.
    let inside = std::path::PathBuf::from(format!("/proc/{}/root", daemon.id()))
        .join(db_dir.strip_prefix("/").unwrap());
    // Counted by the CLI inside the daemon's mount namespace (SQLite
    // resolves /proc/<pid>/root to "/", so the file cannot be opened from outside).
    let leads_inside = || {
        let out = std::process::Command::new("nsenter")
            .args(["--target", &daemon_pid.to_string(), "--mount"])
            .arg(env!("CARGO_BIN_EXE_leadmail"))
            .args(["--config", env.config.to_str().unwrap()])
            .args(["leads", "list", "--format", "json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        common::json_lines(&out.stdout).len()
    };

    for n in 1..=2 {
        stack.append(LEADS, "INBOX", &lead(n, 500));
    }
    wait_until("the first leads", Duration::from_secs(30), || {
        stack.count(LEADS, "INBOX") == 0
    });
    assert!(
        inside.join("leads.db").exists(),
        "the database lives on the small filesystem"
    );

    // Fill the filesystem to the last byte.
    let filler = inside.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    for n in 3..=6 {
        stack.append(LEADS, "INBOX", &lead(n, 300_000));
    }
    std::thread::sleep(Duration::from_secs(8));
    assert_held_back(&stack, 4, &mut daemon);

    std::fs::remove_file(&filler).unwrap();
    wait_until(
        "the backlog after space returns",
        Duration::from_secs(60),
        || stack.count(LEADS, "INBOX") == 0,
    );
    assert_eq!(leads_inside(), 6, "every lead exactly once");
    assert_eq!(stack.count(LEADS, "Leads.Processed"), 6);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// PostgreSQL stopped under a running daemon (always on PostgreSQL):
/// nothing is acknowledged while it is down, the daemon keeps retrying, and
/// it catches up when the server is back.
#[test]
fn postgres_stopped_acknowledges_nothing_and_catches_up_when_it_returns() {
    let stack = MailStack::start(&[LEADS], false);
    let env = Env::with_config_on(
        &format!(
            "[daemon]\nlease = \"3s\"\n{}",
            brokerage(&stack.imap_config(LEADS, "  poll_interval = \"1s\""))
        ),
        common::TestBackend::Postgres,
    );
    let pg = env.pg.as_ref().unwrap();
    // A server set up for speed over safety: leadmail must still commit
    // durably before it acknowledges (else the leads committed just before
    // the crash below are lost, though their messages were filed).
    pg.psql("ALTER ROLE leadmail SET synchronous_commit = off");
    let mut daemon = spawn_logged_run(
        std::process::Command::new(env!("CARGO_BIN_EXE_leadmail")),
        &env,
    )
    .unwrap();
    for n in 1..=2 {
        stack.append(LEADS, "INBOX", &lead(n, 500));
    }
    wait_until("the first leads", Duration::from_secs(30), || {
        stack.count(LEADS, "INBOX") == 0
    });

    pg.stop();
    for n in 3..=6 {
        stack.append(LEADS, "INBOX", &lead(n, 500));
    }
    std::thread::sleep(Duration::from_secs(6));
    assert_held_back(&stack, 4, &mut daemon);

    pg.resume();
    wait_until(
        "the backlog after the database returns",
        Duration::from_secs(90),
        || stack.count(LEADS, "INBOX") == 0,
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM leads"),
        "6",
        "every lead exactly once"
    );
    assert_eq!(stack.count(LEADS, "Leads.Processed"), 6);
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// kill -9 at twenty pseudo-random points while a backlog drains and its
/// notifications go out: every lead and every notification exactly once.
#[test]
fn kill_9_twenty_times_while_draining_loses_and_doubles_nothing() {
    const AGENTS: [&str; 3] = ["amy@acme.test", "jane@acme.test", "bob@acme.test"];
    let stack = MailStack::start(&[LEADS, AGENTS[0], AGENTS[1], AGENTS[2]], true);
    let env = Env::with_config(&format!(
        "{}\n{}",
        stack.smtp_config("Acme Leads <notify@acme.test>"),
        brokerage(&stack.imap_config(LEADS, "  poll_interval = \"1s\""))
    ));
    assert!(env.run(&["migrate"]).status.success());
    // A fixed-seed generator: the kill points differ from kill to kill but
    // not from run to run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut random = |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let mut distinct = 0;
    let mut copies = 0;
    for _ in 0..20 {
        for _ in 0..30 {
            distinct += 1;
            stack.append(LEADS, "INBOX", &lead(distinct, 300));
        }
        // Now and then an earlier message arrives again (a resend).
        let again = 1 + random(distinct as u64) as usize;
        stack.append(LEADS, "INBOX", &lead(again, 300));
        copies += 1;
        let mut daemon = env.spawn_run();
        std::thread::sleep(Duration::from_millis(100 + random(900)));
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    let out = env.run(&["run", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(lead_count(&env), distinct, "every lead exactly once");
    assert_eq!(stack.count(LEADS, "INBOX"), 0, "nothing left behind");
    assert_eq!(stack.count(LEADS, "Leads.Processed"), distinct + copies);

    // Notifications: one per lead. Postfix delivers asynchronously, so wait
    // for all of them, then make sure no extra copy trails in.
    let notifications = || -> (usize, usize) {
        let ids: Vec<String> = AGENTS
            .iter()
            .flat_map(|a| stack.headers(a, "INBOX", "Message-ID"))
            .collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        (ids.len(), unique.len())
    };
    wait_until("a notification per lead", Duration::from_secs(60), || {
        notifications().1 >= distinct
    });
    std::thread::sleep(Duration::from_secs(1));
    let (delivered, unique) = notifications();
    assert_eq!(unique, distinct, "one notification per lead");
    // A kill after the message's final "." and before the mark (mostly while
    // the SMTP server syncs its queue file before answering: RFC 1047's
    // window) resends that one notification, with the same Message-ID.
    // The sender has one message in flight, so at most one per kill.
    eprintln!("{delivered} delivered for {unique} leads after 20 kills");
    assert!(
        delivered - unique <= 20,
        "{delivered} delivered for {unique} leads"
    );
}
