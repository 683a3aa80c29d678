//! Shared helpers of the end-to-end tests: the `leadmail` binary run against
//! a configuration and a fresh database in a temporary directory: a SQLite
//! file, or with `LEADMAIL_TEST_DATABASE=postgres` a private PostgreSQL
//! cluster of the test's own (scripts/test.sh runs the suites both ways).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_leadmail"));
    c.env_remove("LEADMAIL_CONFIG").env_remove("RUST_LOG");
    c
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The database backend the tests run against (`LEADMAIL_TEST_DATABASE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

pub fn backend() -> TestBackend {
    match std::env::var("LEADMAIL_TEST_DATABASE").as_deref() {
        Ok("postgres") => TestBackend::Postgres,
        Ok("sqlite") | Err(_) => TestBackend::Sqlite,
        Ok(other) => panic!("LEADMAIL_TEST_DATABASE={other}: expected sqlite or postgres"),
    }
}

/// For tests of SQLite itself (its file, its disk): whether to run them.
pub fn on_sqlite() -> bool {
    let yes = backend() == TestBackend::Sqlite;
    if !yes {
        eprintln!("skipped: this test is about the SQLite backend");
    }
    yes
}

/// A temporary directory holding the demo configuration with its database moved inside.
pub struct Env {
    pub config: PathBuf,
    /// The private PostgreSQL cluster, when the tests run on PostgreSQL.
    pub pg: Option<postgres::PgCluster>,
    pub dir: tempfile::TempDir,
}

impl Env {
    /// The shipped demo configuration.
    pub fn new() -> Env {
        Env::with_config(&std::fs::read_to_string(root().join("config/leadmail.toml")).unwrap())
    }

    /// `config_text` with its database moved into the temporary directory.
    pub fn with_config(config_text: &str) -> Env {
        Env::with_config_on(config_text, backend())
    }

    /// The same on a given backend, whatever `LEADMAIL_TEST_DATABASE` says.
    pub fn with_config_on(config_text: &str, backend: TestBackend) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pg = (backend == TestBackend::Postgres).then(postgres::PgCluster::start);
        let url = match &pg {
            Some(pg) => format!("url = \"{}\"", pg.url()),
            None => format!(
                "url = \"sqlite://{}\"",
                dir.path().join("db/leads.db").display()
            ),
        };
        let text = if config_text.contains("url = \"sqlite://data/leadmail.db\"") {
            config_text.replace("url = \"sqlite://data/leadmail.db\"", &url)
        } else {
            assert!(
                !config_text.contains("[database]"),
                "tests own the database setting"
            );
            format!("[database]\n{url}\n{config_text}")
        };
        let config = dir.path().join("leadmail.toml");
        std::fs::write(&config, text).unwrap();
        Env { config, pg, dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    pub fn ingest_json(&self, inputs: &[&Path]) -> Vec<Value> {
        let mut args = vec!["ingest", "--format", "json"];
        let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        args.extend(inputs.iter().map(String::as_str));
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "ingest failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
    }

    pub fn leads(&self) -> Vec<Value> {
        let out = self.run(&["leads", "list", "--format", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
    }
}

pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

impl Env {
    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "leadmail {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a message file into the temporary directory and returns its path.
    pub fn message(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Starts `leadmail run` in the background (its output discarded: an
    /// unread pipe could fill up and stall it).
    pub fn spawn_run(&self) -> std::process::Child {
        bin()
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .current_dir(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn lead(&self, id: i64) -> Value {
        serde_json::from_str(&self.ok(&["leads", "show", &id.to_string(), "--format", "json"]))
            .unwrap()
    }
}
pub mod faultproxy;
pub mod mailstack;
pub mod postgres;

/// A plain HTTP/1.1 GET on loopback: the status and the body, or None when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(port, "GET", path, None)
}

/// A plain HTTP/1.1 request on loopback with an optional (content type,
/// body); the status and the body, or None when nothing answers.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .ok()?;
    let (content_type, content) = body.unwrap_or(("text/plain", ""));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{content}",
        content.len()
    )
    .ok()?;
    // Read the head, then the body by its length (some servers keep the
    // connection open despite "Connection: close").
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break response.windows(4).position(|w| w == b"\r\n\r\n")?;
        }
        response.extend_from_slice(&buf[..n]);
        if let Some(p) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
    };
    let head = String::from_utf8_lossy(&response[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    match length {
        Some(len) => {
            while response.len() < head_end + 4 + len {
                let n = stream.read(&mut buf).ok()?;
                if n == 0 {
                    break;
                }
                response.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            let _ = stream.read_to_end(&mut response);
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Peak resident memory of the largest child process this test binary has
/// waited for so far, in bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0);
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}

/// Polls `check` every 50 ms until it holds; fails the test after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
