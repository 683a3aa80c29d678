//! Faults against the real servers: an IMAP server that stalls mid-FETCH,
//! answers NO or BAD, drops the connection or crawls; a database on a full
//! filesystem; kill -9 again and again while a backlog drains. In every case
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
