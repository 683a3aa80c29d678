//! The offer page in a real browser: headless Chromium, driven over the W3C
//! WebDriver protocol by chromedriver, opens the link from the real offer
//! email (sent through Postfix, fetched over IMAP), clicks Accept, and the
//! lead's owner becomes that agent. A second click and a forged token are
//! refused with a clear page.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mailstack::{MailStack, free_port};
use common::{Env, http_request, wait_until};
use serde_json::{Value, json};

const LEADS: &str = "leads@acme.test";
const BOB: &str = "bob@acme.test";

/// A chromedriver on a free port, with a browser session; both end on drop.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver)");
        wait_until("chromedriver", Duration::from_secs(20), || {
            http_request(port, "GET", "/status", None).is_some()
        });
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let created = b.call("POST", "/session", Some(caps));
        b.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string());
        let (_, text) = http_request(
            self.port,
            method,
            path,
            body.as_deref().map(|b| ("application/json", b)),
        )
        .expect("chromedriver answers");
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({ "url": url })));
    }

    fn title(&self) -> String {
        self.session_call("GET", "/title", None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn text(&self) -> String {
        let body = self.find("main");
        let id = body.expect("a main element");
        self.session_call("GET", &format!("/element/{id}/text"), None)["value"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element a CSS selector finds, if any.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.session_call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        // The W3C web element identifier; absent when nothing matched.
        found["value"]["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .map(str::to_string)
    }

    /// Clicks what `css` finds, a button that submits its form, and waits
    /// for the page the submission leads to: the click can return before the
    /// next page has replaced this one.
    fn click(&self, css: &str) {
        let page = self.find("html").expect("a page");
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("no {css} on the page: {}", self.title()));
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
        wait_until(
            "the page the click leads to",
            Duration::from_secs(20),
            || {
                // The old page's root element goes stale once the next page is in.
                let old = self.session_call("GET", &format!("/element/{page}/name"), None);
                old["value"]["error"].is_string()
            },
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http_request(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Bob's mail, read over IMAP with leadmail's own client.
fn bob_mail(stack: &MailStack) -> Vec<Vec<u8>> {
    let text = stack.imap_config(BOB, "  after = \"flag\"");
    let (_, body) = text.split_once('\n').unwrap();
    let imap: leadmail::config::ImapConfig = toml::from_str(body).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut inbox = leadmail::source::imap::Inbox::open(&imap, common::mailstack::PASSWORD)
            .await
            .unwrap();
        let uids = inbox.waiting().await.unwrap();
        let mail = inbox.fetch(&uids).await.unwrap();
        inbox.logout().await;
        mail.into_iter().map(|m| m.bytes).collect()
    })
}

#[test]
fn an_agent_accepts_an_offer_in_a_real_browser() {
    let stack = MailStack::start(&[LEADS, BOB, "cara@acme.test", "amy@acme.test"], true);
    let port = free_port();
    let secret_file = stack.dir.path().join("offer.secret");
    std::fs::write(&secret_file, "a-long-random-secret-for-offer-links\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let env = Env::with_config(&format!(
        r#"{smtp}
[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
offer_secret_file = "{secret}"

[[brokerages]]
id = "acme"
name = "Acme"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"
{imap}
  [[brokerages.rules]]
  name = "website buyers"
  assign = "offer"
  pool = ["bob", "cara"]
  acceptance_period = "10m"
  referral_fee_percent = 25

  [[brokerages.agents]]
  id = "amy"
  name = "Amy"
  role = "admin"
  emails = ["amy@acme.test"]
  [[brokerages.agents]]
  id = "bob"
  name = "Bob"
  emails = ["{BOB}"]
  [[brokerages.agents]]
  id = "cara"
  name = "Cara"
  emails = ["cara@acme.test"]
"#,
        smtp = stack.smtp_config("Acme Leads <notify@acme.test>"),
        secret = secret_file.display(),
        imap = stack.imap_config(LEADS, "  poll_interval = \"1s\""),
    ));
    let mut daemon = env.spawn_run();
    stack.append(
        LEADS,
        "INBOX",
        b"From: Site <noreply@site.example>\r\nTo: leads@acmerealty.example\r\nSubject: Inquiry\r\nMessage-ID: <browser-1@site.example>\r\n\r\nName: Olive Offer\r\nEmail: olive@example.com\r\nPhone: 555-010-4242\r\nProperty: 12 Elm St, Ann Arbor, MI 48103\r\n",
    );

    // The offer email: no contact data, a link to the offer page.
    wait_until("the offer email", Duration::from_secs(30), || {
        !bob_mail(&stack).is_empty()
    });
    let raw = bob_mail(&stack).remove(0);
    let mail = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let text = mail.body_text(0).unwrap().into_owned();
    for pii in ["Olive", "olive@example.com", "4242"] {
        assert!(!text.contains(pii), "{pii} in the offer email: {text}");
    }
    let prefix = format!("http://127.0.0.1:{port}/offers/");
    let link: String = text[text.find(&prefix).expect("a link")..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    let browser = Browser::start();
    browser.open(&link);
    assert_eq!(browser.title(), "Lead offer \u{2014} leadmail");
    assert!(browser.text().contains("12 Elm St"), "{}", browser.text());
    // Opening the page (as a mail scanner would) accepted nothing.
    let lead = &env.leads()[0];
    assert_eq!(lead["status"], "offered");

    browser.click("button[value=accept]");
    assert_eq!(browser.title(), "Lead accepted \u{2014} leadmail");
    let lead = &env.leads()[0];
    assert_eq!(
        (lead["owner"].as_str(), lead["user"].as_str()),
        (Some("bob"), Some("bob"))
    );

    // The link again: closed, politely; a second submission is refused.
    browser.open(&link);
    assert!(browser.find("button[value=accept]").is_none());
    assert!(
        browser.text().contains("You accepted this lead"),
        "{}",
        browser.text()
    );
    let path = link.trim_start_matches(&format!("http://127.0.0.1:{port}"));
    let (status, body) = http_request(
        port,
        "POST",
        path,
        Some(("application/x-www-form-urlencoded", "action=accept")),
    )
    .unwrap();
    assert_eq!(status, 409);
    assert!(body.contains("This offer is closed"));

    // A forged token: a clear page, not an error trace.
    let (id, _) = path.trim_start_matches("/offers/").split_once('.').unwrap();
    browser.open(&format!("{prefix}{id}.00112233445566778899aabbccddeeff"));
    assert_eq!(browser.title(), "Link not valid \u{2014} leadmail");

    // The confirmation with the full profile reaches bob.
    wait_until("the confirmation", Duration::from_secs(30), || {
        bob_mail(&stack).len() >= 2
    });
    let confirmation = bob_mail(&stack).remove(1);
    assert!(String::from_utf8_lossy(&confirmation).contains("olive@example.com"));
    let _ = daemon.kill();
    let _ = daemon.wait();
}
