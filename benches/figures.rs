//! leadmail's benchmark figures, each a ratio against a baseline measured in
//! the same run (these machines are noisy; absolute numbers alone mean
//! little). Run through `bench/run.sh`, which builds in release mode and
//! prints one greppable line per figure:
//!
//!   parse_ratio     full parse vs mail-parser alone, over the fixture corpus
//!   ingest_ratio    `leadmail run --once` on N messages vs a minimal
//!                   `UID FETCH 1:* (BODY.PEEK[])` client on the same mailbox
//!   time_to_lead    delivery-to-commit per message (p50, p99) vs a minimal
//!                   IDLE client's delivery-to-EXISTS (the floor)
//!   peak_rss        peak resident memory draining a small and a larger backlog
//!
//! Usage: figures [--size smoke|default|full] [parse|ingest|latency|rss]...

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;

struct Sizes {
    parse_secs: f64,
    ingest: usize,
    latency: usize,
    rss: (usize, usize),
}

fn sizes(name: &str) -> Sizes {
    match name {
        "smoke" => Sizes {
            parse_secs: 0.3,
            ingest: 200,
            latency: 10,
            rss: (100, 400),
        },
        "full" => Sizes {
            parse_secs: 5.0,
            ingest: 10_000,
            latency: 200,
            rss: (10_000, 100_000),
        },
        _ => Sizes {
            parse_secs: 3.0,
            ingest: 10_000,
            latency: 200,
            rss: (10_000, 40_000),
        },
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn leadmail_bin() -> PathBuf {
    root().join("target/release/leadmail")
}

fn main() {
    // `cargo test --all-targets` runs bench targets too, without `--bench`:
    // the figures need a release build and minutes, so they run only as a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        println!("figures: run through bench/run.sh (cargo bench); nothing to do under cargo test");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let size = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "default".to_string());
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["parse", "ingest", "latency", "rss"].contains(a))
        .collect();
    let all = wanted.is_empty();
    let s = sizes(&size);
    println!(
        "# machine: {} cores; size: {size}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    if all || wanted.contains(&"parse") {
        parse_ratio(s.parse_secs);
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if all || wanted.contains(&"ingest") {
        rt.block_on(ingest_ratio(s.ingest));
    }
    if all || wanted.contains(&"latency") {
        rt.block_on(time_to_lead(s.latency));
    }
    if all || wanted.contains(&"rss") {
        peak_rss(s.rss);
    }
}

fn corpus() -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/emails"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Messages per second of `f` over the corpus, for about `secs` seconds.
fn rate(corpus: &[Vec<u8>], secs: f64, mut f: impl FnMut(&[u8])) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for m in corpus {
            f(m);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn parse_ratio(secs: f64) {
    let corpus = corpus();
    let opts = leadmail::parse::ParseOptions::default();
    // Interleave the two, twice, so that neither gets a warmer machine.
    let mut ours = 0.0;
    let mut theirs = 0.0;
    for _ in 0..2 {
        theirs += rate(&corpus, secs / 2.0, |m| {
            std::hint::black_box(mail_parser::MessageParser::default().parse(m));
        });
        ours += rate(&corpus, secs / 2.0, |m| {
            std::hint::black_box(leadmail::parse::parse(m, &opts));
        });
    }
    println!(
        "parse_ratio {:.2} (leadmail {:.0} msg/s, mail-parser {:.0} msg/s; target >= 0.5)",
        ours / theirs,
        ours / 2.0,
        theirs / 2.0
    );
}

// ---------------------------------------------------------------------------
// A private Dovecot, via the test harness script.

struct Stack {
    dir: tempfile::TempDir,
    imap_port: u16,
    mail_user_dir: PathBuf,
}

const USER: &str = "leads@bench.test";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Stack {
    fn start() -> Stack {
        let dir = tempfile::Builder::new()
            .prefix("lmb")
            .tempdir_in("/tmp")
            .unwrap();
        let imap_port = free_port();
        let out = Command::new("bash")
            .arg(root().join("tests/harness/mailstack.sh"))
            .arg("start")
            .arg(dir.path())
            .env("IMAP_PORT", imap_port.to_string())
            .env("IMAPS_PORT", free_port().to_string())
            .env("LMTP_PORT", free_port().to_string())
            .env("SASL_PORT", free_port().to_string())
            .env("MAILSTACK_USERS", format!("{USER}:secret"))
            .output()
            .expect("mailstack.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mail_user_dir = dir.path().join("mail/bench.test/leads");
        Stack {
            dir,
            imap_port,
            mail_user_dir,
        }
    }

    /// Fills INBOX with `n` distinct lead messages, written straight into the
    /// Maildir (APPEND one by one would take longer than the benchmark).
    fn fill(&self, n: usize) {
        // Create the Maildir through Dovecot, so that ownership is right.
        let conf = self.dir.path().join("dovecot/dovecot.conf");
        let status = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["mailbox", "status", "-u", USER, "messages", "INBOX"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let new = self.mail_user_dir.join("Maildir/new");
        std::fs::create_dir_all(&new).unwrap();
        let corpus = corpus();
        for i in 0..n {
            let base = &corpus[i % corpus.len()];
            let mut m =
                format!("Message-ID: <bench-{i}@bench.test>\r\nX-Bench: {i}\r\n").into_bytes();
            // Drop the fixture's own Message-ID so that each copy is distinct.
            let text = String::from_utf8_lossy(base);
            for line in text.split_inclusive('\n') {
                if !line.to_ascii_lowercase().starts_with("message-id:") {
                    m.extend_from_slice(line.as_bytes());
                }
            }
            // Named as a delivery names them: distinct time, microseconds and
            // pid parts, and the size. (A first version gave every file the same
            // pid part, `P1`; Dovecot's MOVE then took ten times as long, a cost
            // of those names, not of leadmail or of real mail.)
            let name = format!(
                "{}.M{}P{}.bench,S={}",
                1_700_000_000 + i,
                (i * 7919) % 1_000_000,
                10_000 + i,
                m.len()
            );
            std::fs::write(new.join(name), m).unwrap();
        }
        Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(self.mail_user_dir.join("Maildir"))
            .status()
            .unwrap();
    }

    fn config(&self, db: &Path) -> PathBuf {
        self.config_for(&format!("sqlite://{}", db.display()))
    }

    fn config_for(&self, database_url: &str) -> PathBuf {
        let pass = self.dir.path().join("pass");
        std::fs::write(&pass, "secret\n").unwrap();
        let text = format!(
            r#"[database]
url = "{database_url}"
[[brokerages]]
id = "bench"
name = "Bench"
lead_addresses = ["leads@acmerealty.example"]
default_owner = "amy"
  [brokerages.imap]
  host = "127.0.0.1"
  port = {}
  tls = "none"
  username = "{USER}"
  password_file = "{}"
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
            self.imap_port,
            pass.display()
        );
        let path = self.dir.path().join("leadmail.toml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tests/harness/mailstack.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .env("MAILSTACK_FAST_STOP", "1")
            .output();
    }
}

async fn connect(port: u16) -> async_imap::Session<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut client = async_imap::Client::new(tcp);
    client.read_response().await.unwrap();
    client
        .login(USER, "secret")
        .await
        .map_err(|(e, _)| e)
        .unwrap()
}

/// The floor: what the server can hand over.
async fn minimal_fetch_all(port: u16) -> (Duration, usize) {
    let start = Instant::now();
    let mut session = connect(port).await;
    session.select("INBOX").await.unwrap();
    let mut n = 0;
    {
        let mut stream = session.uid_fetch("1:*", "(BODY.PEEK[])").await.unwrap();
        while let Some(f) = stream.try_next().await.unwrap() {
            std::hint::black_box(f.body());
            n += 1;
        }
    }
    session.logout().await.ok();
    (start.elapsed(), n)
}

async fn ingest_ratio(n: usize) {
    let stack = Stack::start();
    stack.fill(n);
    let db_dir = tempfile::tempdir().unwrap();
    let config = stack.config(&db_dir.path().join("leads.db"));
    // Warm the server's caches so that neither side pays for them.
    let _ = minimal_fetch_all(stack.imap_port).await;
    let (floor, fetched) = minimal_fetch_all(stack.imap_port).await;
    assert_eq!(fetched, n);
    // The tool people otherwise script around, on the same mailbox (before
    // leadmail moves the messages away; it leaves them in place).
    let getmail = getmail_all(&stack, n);
    let ours = run_once(&config);
    print_ingest("ingest_ratio", "sqlite", ours, floor, n);
    match getmail {
        Some(g) => println!(
            "getmail_ratio {:.2} (getmail6 into a Maildir {:.2}s vs leadmail run --once {:.2}s for {n} messages; target >= 3)",
            g.as_secs_f64() / ours.as_secs_f64(),
            g.as_secs_f64(),
            ours.as_secs_f64()
        ),
        None => println!("getmail_ratio n/a (getmail6 is not installed)"),
    }

    // The same mailbox again, stored in a private PostgreSQL cluster.
    let Some(pg) = PrivatePostgres::start() else {
        println!("ingest_ratio_postgres n/a (no PostgreSQL server installed)");
        return;
    };
    stack.fill(n);
    let _ = minimal_fetch_all(stack.imap_port).await;
    let (floor, fetched) = minimal_fetch_all(stack.imap_port).await;
    assert_eq!(fetched, n);
    let ours = run_once(&stack.config_for(&pg.url()));
    print_ingest("ingest_ratio_postgres", "postgres", ours, floor, n);
}

fn print_ingest(figure: &str, backend: &str, ours: Duration, floor: Duration, n: usize) {
    println!(
        "{figure} {:.2} ({backend}: leadmail run --once {:.2}s for {n} messages = {:.0} msg/s; minimal UID FETCH {:.2}s; target <= 1.3)",
        ours.as_secs_f64() / floor.as_secs_f64(),
        ours.as_secs_f64(),
        n as f64 / ours.as_secs_f64(),
        floor.as_secs_f64()
    );
}

/// `leadmail run --once` with `config`: how long it took.
fn run_once(config: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(leadmail_bin())
        .args(["-q", "--config"])
        .arg(config)
        .args(["run", "--once"])
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// A private PostgreSQL cluster (the test harness's script), stopped when dropped.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn script() -> PathBuf {
        root().join("tests/harness/postgres.sh")
    }

    /// None when no PostgreSQL server is installed.
    fn start() -> Option<PrivatePostgres> {
        let dir = tempfile::Builder::new()
            .prefix("lmpg")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let out = Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(PrivatePostgres { dir, port })
    }

    fn url(&self) -> String {
        format!("postgres://leadmail@127.0.0.1:{}/leadmail", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// getmail6 retrieving the whole INBOX into a Maildir, when it is installed.
fn getmail_all(stack: &Stack, n: usize) -> Option<Duration> {
    let getmail = ["/usr/bin/getmail", "/usr/local/bin/getmail"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let dir = tempfile::tempdir().ok()?;
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).ok()?;
    }
    let rc = dir.path().join("getmailrc");
    std::fs::write(
        &rc,
        format!(
            "[retriever]\ntype = SimpleIMAPRetriever\nserver = 127.0.0.1\nport = {}\nusername = {USER}\npassword = secret\nmailboxes = (\"INBOX\",)\n\n[destination]\ntype = Maildir\npath = {}/\n{}\n[options]\nread_all = true\ndelete = false\nverbose = 0\n",
            stack.imap_port,
            maildir.display(),
            // getmail refuses to deliver as root: it delivers as nobody then.
            if is_root() { "user = nobody\n" } else { "" }
        ),
    )
    .ok()?;
    if is_root() {
        Command::new("chown")
            .args(["-R", "nobody"])
            .arg(&maildir)
            .status()
            .ok()?;
    }
    let start = Instant::now();
    let status = Command::new(getmail)
        .arg("--getmaildir")
        .arg(dir.path())
        .arg("--rcfile")
        .arg(&rc)
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let took = start.elapsed();
    let got = std::fs::read_dir(maildir.join("new")).ok()?.count();
    if !status.success() || got != n {
        eprintln!("getmail6 failed or retrieved {got} of {n} messages; not compared");
        return None;
    }
    Some(took)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn time_to_lead(n: usize) {
    let stack = Stack::start();
    stack.fill(0);
    let db_dir = tempfile::tempdir().unwrap();
    let db = db_dir.path().join("leads.db");
    let config = stack.config(&db);
    let conf = stack.dir.path().join("dovecot/dovecot.conf");
    let save = |i: usize| {
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .args(["save", "-u", USER, "-m", "INBOX"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("From: Site <noreply@site.example>\r\nTo: x@example.com\r\nSubject: t\r\nMessage-ID: <ttl-{i}@bench.test>\r\n\r\nName: P {i}\r\nEmail: p{i}@example.com\r\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        Instant::now()
    };

    // The floor: a minimal IDLE client, delivery to EXISTS.
    let mut floor = Vec::new();
    {
        let mut session = connect(stack.imap_port).await;
        session.select("INBOX").await.unwrap();
        let mut idle = session.idle();
        idle.init().await.unwrap();
        for i in 0..n {
            let delivered = tokio::task::block_in_place(|| save(1_000_000 + i));
            // Wait for the EXISTS that announces this message: Dovecot also
            // sends RECENT and flag updates, which must not count.
            let expected = (i + 1) as u32;
            loop {
                let (wait, _stop) = idle.wait_with_timeout(Duration::from_secs(10));
                match wait.await {
                    Ok(async_imap::extensions::idle::IdleResponse::NewData(data)) => {
                        if let async_imap::imap_proto::Response::MailboxData(
                            async_imap::imap_proto::MailboxDatum::Exists(count),
                        ) = data.parsed()
                            && *count >= expected
                        {
                            break;
                        }
                    }
                    other => panic!("IDLE ended without the EXISTS: {other:?}"),
                }
            }
            floor.push(delivered.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut session = idle.done().await.unwrap();
        session.logout().await.ok();
    }
    // Clear the floor's messages out of the way.
    Command::new("doveadm")
        .arg("-c")
        .arg(&conf)
        .args(["expunge", "-u", USER, "mailbox", "INBOX", "all"])
        .status()
        .unwrap();

    let mut daemon = Command::new(leadmail_bin())
        .args(["-q", "--config"])
        .arg(&config)
        .arg("run")
        .spawn()
        .unwrap();
    // Wait for the daemon to be idle on the inbox.
    std::thread::sleep(Duration::from_secs(2));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut ours = Vec::new();
    for i in 0..n {
        let delivered = tokio::task::block_in_place(|| save(i));
        let mid = format!("ttl-{i}@bench.test");
        loop {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT l.id FROM leads l JOIN messages m ON m.id = l.message_row WHERE m.message_id = ?1",
            )
            .bind(&mid)
            .fetch_optional(&pool)
            .await
            .unwrap();
            if found.is_some() {
                break;
            }
            if delivered.elapsed() > Duration::from_secs(30) {
                panic!("lead {i} never appeared");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        ours.push(delivered.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status();
    let _ = daemon.wait();
    let sort = |v: &mut Vec<f64>| v.sort_by(|a, b| a.total_cmp(b));
    sort(&mut floor);
    sort(&mut ours);
    println!(
        "time_to_lead p50 {:.0} ms p99 {:.0} ms (floor: IDLE EXISTS p50 {:.0} ms p99 {:.0} ms; {n} messages; target p99 <= floor p99 + 100 ms)",
        percentile(&ours, 0.5),
        percentile(&ours, 0.99),
        percentile(&floor, 0.5),
        percentile(&floor, 0.99)
    );
}

/// Peak resident memory of `leadmail run --once` draining `n` messages, in MB.
fn drain_rss(n: usize) -> (f64, f64) {
    let stack = Stack::start();
    stack.fill(n);
    let db_dir = tempfile::tempdir().unwrap();
    let config = stack.config(&db_dir.path().join("leads.db"));
    let start = Instant::now();
    let mut child = Command::new(leadmail_bin())
        .args(["-q", "--config"])
        .arg(&config)
        .args(["run", "--once"])
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("VmHWM:") {
                    let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                    peak_kb = peak_kb.max(kb);
                }
            }
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (peak_kb as f64 / 1024.0, start.elapsed().as_secs_f64())
}

fn peak_rss((small, large): (usize, usize)) {
    let (a, ta) = drain_rss(small);
    let (b, tb) = drain_rss(large);
    println!(
        "peak_rss {:.1} MB at {large} messages, {:.1} MB at {small} (growth x{:.2} for x{:.0} messages; {:.1}s and {:.1}s; target <= 64 MB and flat)",
        b,
        a,
        b / a,
        large as f64 / small as f64,
        tb,
        ta
    );
}
