//! Several `leadmail run` instances sharing one PostgreSQL, as a brokerage
//! group runs them on several hosts: each inbox worked by one instance at a
//! time, the inboxes of an instance killed with SIGKILL taken over by the
//! others once its leases expire, and still every lead and every
//! notification exactly once, the rotation fair. Always on PostgreSQL (a
//! private cluster), whatever `LEADMAIL_TEST_DATABASE` says.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::mailstack::MailStack;
use common::{Env, TestBackend, bin, json_lines, wait_until};
use serde_json::Value;

const INBOXES: usize = 5;
const PER_INBOX: usize = 200;
const POOL: [&str; 3] = ["x", "y", "z"];
const INSTANCES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn inbox(b: usize) -> String {
    format!("leads{b}@cluster.test")
}

fn agent_mailbox(b: usize, agent: &str) -> String {
    format!("{agent}{b}@agents.test")
}

fn config(stack: &MailStack) -> String {
    // A short lease, so that the take-over is seen within the test; the
    // instance names are set per process (as on separate hosts, where a
    // dead holder can only be recognised by its lease running out). At
    // most two inboxes each while the others can work them: 2, 2 and 1.
    let mut text = format!(
        "{}\n[daemon]\nlease = \"3s\"\nsend_claim = \"5s\"\nmax_inboxes = 2\n",
        stack.smtp_config("Leads <notify@cluster.test>")
    );
    for b in 0..INBOXES {
        text += &format!(
            r#"
[[brokerages]]
id = "b{b}"
name = "Brokerage {b}"
lead_addresses = ["leads@b{b}.example"]
default_owner = "admin"
{imap}
  [[brokerages.rules]]
  name = "everyone"
  pool = ["x", "y", "z"]

  [[brokerages.agents]]
  id = "admin"
  name = "Admin {b}"
  role = "admin"
  emails = ["admin{b}@agents.test"]
"#,
            imap = stack.imap_config(&inbox(b), "  poll_interval = \"1s\"")
        );
        for a in POOL {
            text += &format!(
                "  [[brokerages.agents]]\n  id = \"{a}\"\n  name = \"Agent {a}{b}\"\n  emails = [\"{}\"]\n",
                agent_mailbox(b, a)
            );
        }
    }
    text
}

fn lead(b: usize, n: usize) -> Vec<u8> {
    format!(
        "From: Site <noreply@site.example>\r\nTo: leads@b{b}.example\r\nSubject: Inquiry {n}\r\nMessage-ID: <cluster-{b}-{n}@site.example>\r\n\r\nName: Person {b} {n}\r\nEmail: person{b}x{n}@example.com\r\nPhone: 555-01{b}-{n:04}\r\nMessage: I would like to see the house.\r\n"
    )
    .into_bytes()
}

fn spawn(env: &Env, instance: &str) -> Child {
    let log = std::fs::File::create(env.dir.path().join(format!("{instance}.log"))).unwrap();
    bin()
        .arg("--config")
        .arg(&env.config)
        .arg("run")
        .env("LEADMAIL__DAEMON__INSTANCE", instance)
        .env("RUST_LOG", "info")
        .current_dir(env.dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Which instance holds each inbox's lease, from `leadmail status`.
fn holders(env: &Env) -> BTreeMap<String, Option<String>> {
    json_lines(env.ok(&["status", "--format", "json"]).as_bytes())
        .into_iter()
        .filter(|s| s.get("brokerage").is_some())
        .map(|s| {
            let holder = s["lease"]["holder"].as_str().map(str::to_string);
            (s["brokerage"].as_str().unwrap().to_string(), holder)
        })
        .collect()
}

#[test]
fn three_instances_share_five_inboxes_and_survive_a_kill_9() {
    let mut users: Vec<String> = (0..INBOXES).map(inbox).collect();
    for b in 0..INBOXES {
        users.extend(POOL.iter().map(|a| agent_mailbox(b, a)));
    }
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let stack = MailStack::start(&users, true);
    let env = Env::with_config_on(&config(&stack), TestBackend::Postgres);
    let pg = env.pg.as_ref().unwrap();
    // Half the messages wait when the instances start; the other half
    // arrive after the kill, so that the survivors must take the victim's
    // inboxes over to finish.
    let deliver = |half: std::ops::Range<usize>| {
        for b in 0..INBOXES {
            let messages: Vec<Vec<u8>> = half.clone().map(|n| lead(b, n)).collect();
            stack.fill(&inbox(b), &messages);
        }
    };
    deliver(0..PER_INBOX / 2);
    let total = INBOXES * PER_INBOX;

    // All three start at once against an empty database (migrations and
    // the directory are set up by whichever comes first).
    let mut daemons: BTreeMap<&str, Child> =
        INSTANCES.iter().map(|i| (*i, spawn(&env, i))).collect();
    // (Until the first instance has migrated, there is no table to count.)
    let leads = || -> usize {
        pg.try_psql("SELECT count(*) FROM leads")
            .map_or(0, |n| n.parse().unwrap())
    };
    let started = Instant::now();
    while leads() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {} leads",
            leads()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The instances share the inboxes; kill one that works two of them, in
    // the middle of its work.
    let mut before = holders(&env);
    while before.values().any(Option::is_none) {
        before = holders(&env);
    }
    let mut held: BTreeMap<&str, usize> = BTreeMap::new();
    for h in before.values().flatten() {
        *held
            .entry(INSTANCES.iter().find(|i| *i == h).unwrap())
            .or_default() += 1;
    }
    let mut shares: Vec<usize> = held.values().copied().collect();
    shares.sort();
    assert_eq!(shares, [1, 2, 2], "inboxes shared out: {before:?}");
    let (&victim, &victim_inboxes) = held.iter().max_by_key(|(_, n)| **n).unwrap();
    let mut child = daemons.remove(victim).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();
    let at_kill = leads();
    eprintln!("killed {victim} (holding {victim_inboxes} inboxes) at {at_kill} of {total} leads");
    deliver(PER_INBOX / 2..PER_INBOX);

    // Its leases move to the survivors once they run out (3 s here).
    wait_until("the leases taken over", Duration::from_secs(30), || {
        holders(&env)
            .values()
            .all(|h| h.as_deref().is_some_and(|h| h != victim))
    });
    eprintln!(
        "leases taken over {:.1}s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // The survivors finish everything, the victim's inboxes included.
    let inbox_counts = || -> Vec<usize> {
        (0..INBOXES)
            .map(|b| stack.count(&inbox(b), "INBOX"))
            .collect()
    };
    wait_until("every inbox drained", Duration::from_secs(240), || {
        inbox_counts().iter().all(|n| *n == 0)
    });
    wait_until("every lead stored", Duration::from_secs(30), || {
        leads() == total
    });

    // Every lead exactly once, every message acknowledged exactly once.
    let rows = env.leads();
    assert_eq!(rows.len(), total, "every lead exactly once");
    let emails: BTreeSet<&str> = rows
        .iter()
        .map(|r| r["contact"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), total, "one lead per person");
    for b in 0..INBOXES {
        assert_eq!(
            stack.count(&inbox(b), "Leads.Processed"),
            PER_INBOX,
            "inbox {b}: every message filed once"
        );
    }

    // The rotation stayed fair in every brokerage: within one of even.
    let mut per_user: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &rows {
        let key = (
            r["brokerage"].as_str().unwrap().to_string(),
            r["user"].as_str().unwrap().to_string(),
        );
        *per_user.entry(key).or_default() += 1;
    }
    for b in 0..INBOXES {
        let counts: Vec<usize> = POOL
            .iter()
            .map(|a| {
                per_user
                    .get(&(format!("b{b}"), a.to_string()))
                    .copied()
                    .unwrap_or(0)
            })
            .collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "b{b}: round robin {counts:?} is not fair");
        assert_eq!(counts.iter().sum::<usize>(), PER_INBOX, "b{b}: {counts:?}");
    }

    // The leases stay with the survivors.
    for (inbox, holder) in holders(&env) {
        let holder = holder.unwrap_or_else(|| "nobody".to_string());
        assert!(
            holder != victim && INSTANCES.contains(&holder.as_str()),
            "{inbox} is held by {holder} after {victim} was killed"
        );
    }

    // Notifications: one per lead, sent by exactly one of the instances.
    let outbox = || -> Value {
        json_lines(env.ok(&["status", "--format", "json"]).as_bytes())
            .into_iter()
            .find_map(|s| s.get("outbox").cloned())
            .unwrap()
    };
    wait_until("the outbox sent", Duration::from_secs(180), || {
        outbox()["sent"].as_i64() == Some(total as i64)
    });
    let message_ids = || -> Vec<String> {
        (0..INBOXES)
            .flat_map(|b| POOL.iter().map(move |a| agent_mailbox(b, a)))
            .flat_map(|m| stack.headers(&m, "INBOX", "Message-ID"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ids = message_ids();
    while ids.len() < total && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        ids = message_ids();
    }
    std::thread::sleep(Duration::from_secs(1));
    let ids = message_ids();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), total, "a notification for every lead");
    // The victim may have been killed between SMTP's final answer and
    // marking the row sent (RFC 1047's window): that one goes out again.
    assert!(
        ids.len() - unique.len() <= 1,
        "{} notifications delivered for {total} leads",
        ids.len()
    );

    for (_, mut d) in daemons {
        let _ = d.kill();
        let _ = d.wait();
    }
}
