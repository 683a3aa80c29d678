//! Notifications against real servers: Postfix (SMTP, STARTTLS) delivering
//! into Dovecot, read back from the agent's mailbox.

mod common;

use std::time::Duration;

use common::mailstack::MailStack;
use common::{Env, wait_until};

const LEADS: &str = "leads@acme.test";
const AGENT: &str = "agent@acme.test";

fn config(stack: &MailStack, agent_email: &str, imap: bool) -> String {
    format!(
        r#"{smtp}
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
  [[brokerages.agents]]
  id = "jane"
  name = "Jane Smith"
  emails = ["{agent_email}"]
"#,
        smtp = stack.smtp_config("Acme Leads <notify@acme.test>"),
        imap = if imap {
            stack.imap_config(LEADS, "")
        } else {
            String::new()
        },
    )
}

fn lead_file(env: &Env, n: u32, name: &str) -> std::path::PathBuf {
    env.message(
        &format!("lead{n}.eml"),
        &format!(
            "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry\nMessage-ID: <n-{n}@site.example>\n\nName: {name}\nEmail: person{n}@example.com\nPhone: 555-010-{n:04}\nProperty: {n} Oak St, Ann Arbor, MI 48103\nMessage: Is it <b>still</b> available?\n"
        ),
    )
}

fn wait_for(what: &str, secs: u64, check: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(secs), check);
}

/// Waits for `n` messages and makes sure no more follow.
fn expect_exactly(stack: &MailStack, user: &str, n: usize) {
    wait_for(&format!("{n} messages for {user}"), 20, || {
        stack.count(user, "INBOX") >= n
    });
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(stack.count(user, "INBOX"), n, "exactly {n}");
}

#[test]
fn one_correct_notification_per_lead() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    let env = Env::with_config(&config(&stack, AGENT, false));
    let first = lead_file(&env, 1, "Victor Almeida");
    let rows = env.ingest_json(&[&first]);
    assert_eq!(rows[0]["outcome"], "created");
    expect_exactly(&stack, AGENT, 1);

    let raw = &stack.messages(AGENT, "INBOX")[0];
    let mail = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("a message");
    assert_eq!(
        mail.subject(),
        Some("New lead: Victor Almeida \u{2014} 1 Oak St, Ann Arbor, MI 48103 (generic)")
    );
    assert_eq!(
        mail.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert!(
        mail.header_raw("X-Leadmail-Notification")
            .unwrap()
            .contains("lead=1")
    );
    let reply_to = mail
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(reply_to, Some("person1@example.com"));
    assert_eq!(
        mail.from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("notify@acme.test")
    );
    assert!(
        mail.message_id()
            .unwrap()
            .starts_with("leadmail.lead1.jane@")
    );
    let html = mail.body_html(0).unwrap();
    assert!(
        html.contains("&lt;b&gt;still&lt;/b&gt;"),
        "lead text is escaped: {html}"
    );
    assert!(!html.contains("<b>still"));
    assert!(html.contains("tel:+15550100001"));
    let text = mail.body_text(0).unwrap();
    assert!(text.contains("Phone: +15550100001"));

    // The same lead again: no second notification; a new lead: one more.
    env.ingest_json(&[&first]);
    env.ingest_json(&[&lead_file(&env, 2, "Grace Liu")]);
    expect_exactly(&stack, AGENT, 2);
}

#[test]
fn hostile_field_content_is_stored_verbatim_and_never_breaks_a_notification() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    let env = Env::with_config(&config(&stack, AGENT, false));
    let sql = "Robert'); DROP TABLE leads;--";
    let long = "The kitchen <b>matters</b> & so does light. ".repeat(2400); // ~100 KB
    let msg = env.message(
        "evil.eml",
        &format!(
            "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: x\nMessage-ID: <evil@site.example>\nContent-Type: text/plain; charset=utf-8\n\nName: =?utf-8?q?Eve=0D=0ABcc=3A_victim=40example=2Ecom?= <script>alert(1)</script>\nEmail: eve@example.com\nComments: {sql} <script>alert(3)</script> <img src=x onerror=alert(2)> {long}\n"
        ),
    );
    let rows = env.ingest_json(&[&msg]);
    assert_eq!(rows[0]["outcome"], "created");
    let id = rows[0]["lead_id"].as_i64().unwrap();

    // Stored as sent: the SQL is data, the markup is text.
    let lead = env.lead(id);
    let name = lead["contact"]["name"].as_str().unwrap_or("");
    assert!(!name.contains('\r') && !name.contains('\n'), "{name:?}");
    let message = lead["message"].as_str().unwrap_or("");
    assert!(message.contains(sql), "the SQL-looking text is kept");
    assert!(message.contains("<script>alert(3)</script> <img src=x onerror=alert(2)>"));
    assert!(message.len() > 100_000, "a 100 KB message is kept whole");
    assert_eq!(env.leads().len(), 1, "the leads table is intact");

    expect_exactly(&stack, AGENT, 1);
    let raw = &stack.messages(AGENT, "INBOX")[0];
    let mail = mail_parser::MessageParser::default().parse(raw).unwrap();
    assert!(mail.header_raw("Bcc").is_none(), "no header injection");
    assert_eq!(
        mail.to().and_then(|t| t.first()).and_then(|a| a.address()),
        Some(AGENT)
    );
    assert!(
        !mail.subject().unwrap_or("").contains('\n'),
        "{:?} {:?}",
        mail.subject(),
        mail.header_raw("Subject")
    );
    let html = mail.body_html(0).unwrap();
    assert!(!html.contains("<script>") && !html.contains("<img src=x"));
    assert!(html.contains("&lt;script&gt;"), "shown, escaped");
}

#[test]
fn smtp_outage_delays_but_never_loses_or_doubles() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    let env = Env::with_config(&config(&stack, AGENT, false));
    stack.stop_smtp();
    let out = env.run(&[
        "ingest",
        "--format",
        "json",
        lead_file(&env, 1, "Ann Lee").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "the lead is stored even when mail is down"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not sent yet"));
    let status = env.ok(&["status", "--format", "json"]);
    assert!(status.contains("\"pending\":1"), "{status}");

    stack.start_smtp();
    // The retry is due 5 s after the failed attempt.
    std::thread::sleep(Duration::from_millis(5500));
    assert!(env.run(&["run", "--once"]).status.success());
    expect_exactly(&stack, AGENT, 1);
    assert!(env.run(&["run", "--once"]).status.success());
    expect_exactly(&stack, AGENT, 1);
}

#[test]
fn kill_9_after_commit_still_notifies_once() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    let env = Env::with_config(&config(&stack, AGENT, true));
    assert!(env.run(&["migrate"]).status.success());
    stack.stop_smtp();
    let mut child = env.spawn_run();
    stack.append(
        LEADS,
        "INBOX",
        &std::fs::read(lead_file(&env, 7, "Kim Park")).unwrap(),
    );
    wait_for("the lead", 20, || env.leads().len() == 1);
    child.kill().unwrap();
    child.wait().unwrap();
    stack.start_smtp();
    std::thread::sleep(Duration::from_millis(5500));
    assert!(env.run(&["run", "--once"]).status.success());
    expect_exactly(&stack, AGENT, 1);
}

#[test]
fn a_notification_delivered_to_the_lead_inbox_never_becomes_a_lead() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    // Misconfigured on purpose: the agent's address is the watched lead inbox.
    let env = Env::with_config(&config(&stack, LEADS, true));
    stack.append(
        LEADS,
        "INBOX",
        &std::fs::read(lead_file(&env, 3, "Omar Haddad")).unwrap(),
    );
    assert!(env.run(&["run", "--once"]).status.success());
    assert_eq!(env.leads().len(), 1);
    // The notification arrives in the inbox...
    wait_for("the notification in the inbox", 20, || {
        stack.count(LEADS, "INBOX") == 1
    });
    // ...and is recognised as our own.
    let out = env.ok(&["run", "--once"]);
    assert!(out.contains("processed 1 messages"), "{out}");
    assert_eq!(env.leads().len(), 1, "never ingests its own notification");
    assert_eq!(stack.count(LEADS, "INBOX"), 0);
}

#[test]
fn notify_test_reaches_the_agent() {
    let stack = MailStack::start(&[LEADS, AGENT], true);
    let env = Env::with_config(&config(&stack, AGENT, false));
    let out = env.ok(&["notify", "test", "jane"]);
    assert!(out.contains("sent to agent@acme.test"), "{out}");
    expect_exactly(&stack, AGENT, 1);
    let out = env.run(&["notify", "test", "nobody"]);
    assert!(!out.status.success());
}

#[test]
fn quarantined_messages_reach_admins_as_one_digest() {
    let stack = MailStack::start(&[LEADS, AGENT, "admin@acme.test"], true);
    let text = config(&stack, AGENT, false).replace(
        "  role = \"admin\"",
        "  role = \"admin\"\n  emails = [\"admin@acme.test\"]",
    );
    let env = Env::with_config(&text);
    let bad = |n: u32| {
        env.message(
            &format!("bad{n}.eml"),
            &format!("From: Form <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: empty\nMessage-ID: <bad-{n}@site.example>\n\nNo details.\n"),
        )
    };
    env.ingest_json(&[&bad(1), &bad(2)]);
    assert!(env.run(&["run", "--once"]).status.success());
    expect_exactly(&stack, "admin@acme.test", 1);
    let raw = &stack.messages("admin@acme.test", "INBOX")[0];
    let mail = mail_parser::MessageParser::default().parse(raw).unwrap();
    assert_eq!(mail.subject(), Some("2 message(s) quarantined for Acme"));
    // Within the digest window, more quarantined mail waits for the next digest.
    env.ingest_json(&[&bad(3)]);
    assert!(env.run(&["run", "--once"]).status.success());
    expect_exactly(&stack, "admin@acme.test", 1);
    assert_eq!(stack.count(AGENT, "INBOX"), 0, "agents get no digest");
}
