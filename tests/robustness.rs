//! Property-style robustness: for any byte input, `parse` returns (never
//! panics) and only calls a message a lead when it found a way to reach the
//! person. Inputs are random bytes and random mutations of the fixture
//! corpus, from a fixed-seed generator so that a failure reproduces.

use leadmail::lead::Verdict;
use leadmail::parse::{ParseOptions, parse};

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

/// Adversarial shapes from the hardening checklist: each returns, and quickly.
#[test]
fn adversarial_messages_return_in_bounded_time() {
    let opts = ParseOptions::default();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    let mut deep = String::from("From: a@example.com\nTo: leads@acmerealty.example\n");
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
    many.push_str("From: a@example.com\n\nEmail: x@example.com\n");
    cases.push(("10,000 headers", many.into_bytes()));

    let mut long = b"From: a@example.com\nContent-Type: text/html\n\n<p>".to_vec();
    long.extend(std::iter::repeat_n(b'a', 1 << 20));
    cases.push(("1 MB single line", long));

    let mut nul =
        b"From: a@example.com\n\nName: \0\0\xff\xfe Jane\nPhone: 555-010-\x001234\n".to_vec();
    nul.extend(std::iter::repeat_n(0u8, 10_000));
    cases.push(("NUL and invalid UTF-8", nul));

    let mut bomb =
        String::from("From: a@example.com\nContent-Type: multipart/mixed; boundary=\"x\"\n\n");
    for _ in 0..500 {
        bomb.push_str("--x\nContent-Type: message/rfc822\n\nFrom: b@example.com\nContent-Type: multipart/mixed; boundary=\"x\"\n\n");
    }
    cases.push(("message/rfc822 bomb", bomb.into_bytes()));

    cases.push((
        "header only",
        b"From: a@example.com\nSubject: hi\n".to_vec(),
    ));
    cases.push(("empty", Vec::new()));

    for (name, bytes) in cases {
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
