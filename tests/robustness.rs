//! Property-style robustness: for any byte input, `parse` returns (never
//! panics) and only calls a message a lead when it found a way to reach the
//! person. Inputs are random bytes and random mutations of the fixture
//! corpus, from a fixed-seed generator so that a failure reproduces; and the
//! hardening checklist's adversarial shapes through `parse`, `ingest` and the
//! daemon against a real Dovecot.

mod common;

use common::Env;
use common::mailstack::MailStack;
use leadmail::lead::Verdict;
use leadmail::parse::{ParseOptions, parse};

const LEADS: &str = "leads@acme.test";

/// xorshift64*: small, deterministic, good enough to scatter mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[&[u8]] = &[
    b"\r\n",
    b"\n\n",
    b"=\n",
    b"=?UTF-8?B?",
    b"Content-Type: multipart/mixed; boundary=x\n",
    b"--x\n",
    b"Content-Transfer-Encoding: base64\n",
    b"<td>",
    b"&#",
    b"---------- Forwarded message ---------\n",
    b"From: ",
    b"\xff\xfe\x00",
    b"Phone: ",
    b"> ",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if !out.is_empty() => {
                let end = (pos + rng.below(64)).min(out.len());
                out.drain(pos.min(end)..end);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(pos..pos, piece.iter().copied());
            }
            2 if !out.is_empty() => {
                let p = pos.min(out.len() - 1);
                out[p] = rng.next() as u8;
            }
            _ => {
                let n = rng.below(32);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(pos..pos, bytes);
            }
        }
    }
    out
}

#[test]
fn parse_returns_for_any_input() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/emails");
    let mut corpus: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert!(!corpus.is_empty());
    corpus.push(Vec::new());
    let opts = ParseOptions::default();
    let mut rng = Rng(0x5eed_1ead_0000_0001);
    let mut leads = 0;
    for i in 0..3000 {
        let input = if i % 10 == 0 {
            (0..rng.below(4096)).map(|_| rng.next() as u8).collect()
        } else {
            let base = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, base)
        };
        let parsed = parse(&input, &opts);
        match parsed.verdict {
            Verdict::Lead => {
                leads += 1;
                assert!(parsed.contact.is_reachable(), "a lead must be reachable");
            }
            Verdict::Ignored | Verdict::Unparseable => {
                assert!(parsed.reason.is_some(), "a non-lead says why");
            }
        }
        if let Some(phone) = &parsed.contact.phone {
            assert!(phone.starts_with('+') && phone[1..].bytes().all(|b| b.is_ascii_digit()));
        }
    }
    assert!(
        leads > 100,
        "mutations of lead fixtures mostly stay leads ({leads})"
    );
}

/// Adversarial shapes from the hardening checklist.
fn adversarial_cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    // A lead with a 25 MB attachment (about 34 MB once base64-encoded).
    let mut big = String::from(
        "From: Site <noreply@site.example>\nTo: leads@acmerealty.example\nSubject: Inquiry with photos\nMessage-ID: <big@site.example>\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nName: Ann Big\nEmail: ann.big@example.com\n\n--b\nContent-Type: application/octet-stream; name=\"photos.zip\"\nContent-Transfer-Encoding: base64\n\n",
    );
    let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\n";
    big.push_str(&line.repeat(25 * 1024 * 1024 / 54 + 1));
    big.push_str("--b--\n");
    cases.push(("25 MB attachment", big.into_bytes()));

    let mut deep = String::from(
        "From: a@example.com\nTo: leads@acmerealty.example\nMessage-ID: <deep@example.com>\n",
    );
    for i in 0..1000 {
        deep.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    deep.push_str("Content-Type: text/plain\n\nPhone: 555-010-1234\n");
    cases.push(("1000-deep multipart", deep.into_bytes()));

    let mut many = String::new();
    for i in 0..10_000 {
        many.push_str(&format!("X-Header-{i}: value {i}\n"));
    }
    many.push_str("From: a@example.com\nMessage-ID: <many@example.com>\n\nEmail: x@example.com\n");
    cases.push(("10,000 headers", many.into_bytes()));

    let mut long =
        b"From: a@example.com\nMessage-ID: <long@example.com>\nContent-Type: text/html\n\n<p>"
            .to_vec();
    long.extend(std::iter::repeat_n(b'a', 1 << 20));
    cases.push(("1 MB single line", long));

    let mut nul =
        b"From: a@example.com\nMessage-ID: <nul@example.com>\n\nName: \0\0\xff\xfe Jane\nPhone: 555-010-\x001234\n".to_vec();
    nul.extend(std::iter::repeat_n(0u8, 10_000));
    cases.push(("NUL and invalid UTF-8", nul));

    let mut bomb = String::from(
        "From: a@example.com\nMessage-ID: <bomb@example.com>\nContent-Type: multipart/mixed; boundary=\"x\"\n\n",
    );
    for _ in 0..500 {
        bomb.push_str("--x\nContent-Type: message/rfc822\n\nFrom: b@example.com\nContent-Type: multipart/mixed; boundary=\"x\"\n\n");
    }
    cases.push(("message/rfc822 bomb", bomb.into_bytes()));

    cases.push((
        "header only",
        b"From: a@example.com\nSubject: hi\nMessage-ID: <hdr@example.com>\n".to_vec(),
    ));
    cases.push(("empty", Vec::new()));
    cases
}

/// Each adversarial shape returns from `parse`, and quickly.
#[test]
fn adversarial_messages_return_in_bounded_time() {
    let opts = ParseOptions::default();
    for (name, bytes) in adversarial_cases() {
        let start = std::time::Instant::now();
        let parsed = parse(&bytes, &opts);
        let took = start.elapsed();
        // Generous: a debug build on a loaded CI machine; the point is "not quadratic".
        assert!(took.as_secs() < 20, "{name} took {took:?}");
        assert!(
            parsed.verdict != Verdict::Lead || parsed.contact.is_reachable(),
            "{name}"
        );
    }
}

/// The same shapes through `leadmail ingest` and through the daemon reading a
/// real Dovecot: each gets an outcome (a lead, ignored or quarantined, kept),
/// nothing is left behind, and memory stays bounded.
#[test]
fn adversarial_messages_through_ingest_and_the_daemon() {
    let cases = adversarial_cases();
    let stack = MailStack::start(&[LEADS], false);
    let text = format!(
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
"#,
        stack.imap_config(LEADS, "  max_message_bytes = 67108864")
    );
    let env = Env::with_config(&text);
    let dir = env.dir.path().join("adversarial");
    std::fs::create_dir(&dir).unwrap();
    for (i, (_, bytes)) in cases.iter().enumerate() {
        std::fs::write(dir.join(format!("{i:02}.eml")), bytes).unwrap();
    }
    let out = env.run(&[
        "ingest",
        "--brokerage",
        "acme",
        "--format",
        "json",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = common::json_lines(&out.stdout);
    assert_eq!(reports.len(), cases.len(), "one outcome per input");
    for (report, (name, _)) in reports.iter().zip(&cases) {
        let outcome = report["outcome"].as_str().unwrap_or("");
        assert!(
            ["created", "repeat", "ignored", "quarantined"].contains(&outcome),
            "{name}: {report}"
        );
    }
    let lead = reports[0]["lead_id"]
        .as_i64()
        .expect("the 25 MB message is a lead");
    assert_eq!(env.lead(lead)["contact"]["email"], "ann.big@example.com");

    // Through IMAP (an empty message cannot be stored on the server).
    let over_imap = cases.iter().filter(|(_, b)| !b.is_empty()).count();
    for (_, bytes) in cases.iter().filter(|(_, b)| !b.is_empty()) {
        stack.append(LEADS, "INBOX", bytes);
    }
    // A database of its own, so that the daemon's outcomes are its own.
    let fresh = Env::with_config(&text);
    let out = fresh.run(&["run", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stack.count(LEADS, "INBOX"), 0, "nothing left behind");
    assert_eq!(
        stack.count(LEADS, "Leads.Processed") + stack.count(LEADS, "Leads.Quarantine"),
        over_imap
    );
    assert!(
        fresh
            .leads()
            .iter()
            .any(|l| l["contact"]["email"] == "ann.big@example.com")
    );

    // Bounded memory: a 34 MB message is held a few times over, not without bound.
    let peak = common::children_peak_rss();
    eprintln!("peak RSS of leadmail: {} MB", peak >> 20);
    assert!(peak < 384 << 20, "peak RSS {} MB", peak >> 20);
}

/// Inputs that once crashed a dependency (kept in `fixtures/crashes/`):
/// each returns a result, and never a lead without contact data.
#[test]
fn known_crashers_return() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/crashes");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let parsed = parse(&bytes, &ParseOptions::default());
        assert!(
            parsed.verdict != Verdict::Lead || parsed.contact.is_reachable(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 1, "the crash corpus is there");
}
