//! A private Dovecot (and optionally Postfix) for one test, on free loopback
//! ports in a temporary directory, stopped when dropped. Wraps
//! `tests/harness/mailstack.sh`; inspects mailboxes with `doveadm`.

use std::path::PathBuf;
use std::process::Command;

pub const PASSWORD: &str = "secret";

pub struct MailStack {
    pub dir: tempfile::TempDir,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub lmtp_port: u16,
    pub smtp_port: Option<u16>,
    /// The CA that signed the servers' certificate: what clients trust.
    pub cert: PathBuf,
    conf: PathBuf,
    env: Vec<(String, String)>,
}

fn script() -> PathBuf {
    super::root().join("tests/harness/mailstack.sh")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl MailStack {
    /// Starts Dovecot with these accounts (password `secret`); with `smtp`, Postfix too.
    pub fn start(users: &[&str], smtp: bool) -> MailStack {
        let dir = tempfile::Builder::new()
            .prefix("lm")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let (imap_port, imaps_port, lmtp_port, sasl_port) =
            (free_port(), free_port(), free_port(), free_port());
        let smtp_port = smtp.then(free_port);
        let mut env = vec![
            ("IMAP_PORT".to_string(), imap_port.to_string()),
            ("IMAPS_PORT".to_string(), imaps_port.to_string()),
            ("LMTP_PORT".to_string(), lmtp_port.to_string()),
            ("SASL_PORT".to_string(), sasl_port.to_string()),
            (
                "MAILSTACK_USERS".to_string(),
                users
                    .iter()
                    .map(|u| format!("{u}:{PASSWORD}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        if let Some(p) = smtp_port {
            env.push(("SMTP_PORT".to_string(), p.to_string()));
        }
        let stack = MailStack {
            cert: dir.path().join("ssl/ca.pem"),
            conf: dir.path().join("dovecot/dovecot.conf"),
            dir,
            imap_port,
            imaps_port,
            lmtp_port,
            smtp_port,
            env,
        };
        stack.run_script("start");
        stack
    }

    fn run_script(&self, verb: &str) {
        let out = Command::new("bash")
            .arg(script())
            .arg(verb)
            .arg(self.dir.path())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .expect("run mailstack.sh");
        assert!(
            out.status.success(),
            "mailstack.sh {verb} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops and starts the servers (same ports, same mail).
    pub fn restart(&self) {
        self.run_script("stop");
        self.run_script("start");
    }

    pub fn stop(&self) {
        self.run_script("stop");
    }

    /// Starts the servers again after `stop` (same ports, same mail).
    pub fn start_again(&self) {
        self.run_script("start");
    }

    /// Stops only the SMTP server (Postfix), leaving IMAP up.
    pub fn stop_smtp(&self) {
        self.postfix("stop");
    }

    pub fn start_smtp(&self) {
        self.postfix("start");
        let port = self.smtp_port.expect("started with smtp");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "postfix did not come back"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn postfix(&self, verb: &str) {
        let out = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.dir.path().join("postfix/etc"))
            .arg(verb)
            .output()
            .expect("postfix");
        assert!(
            out.status.success(),
            "postfix {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The raw text of every message in a mailbox.
    pub fn messages(&self, user: &str, mailbox: &str) -> Vec<Vec<u8>> {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args([
                "-f", "pager", "fetch", "-u", user, "text", "mailbox", mailbox, "all",
            ])
            .output()
            .unwrap();
        out.stdout
            .split(|b| *b == 0x0c)
            .map(|chunk| {
                let s = chunk.strip_prefix(b"\n").unwrap_or(chunk);
                s.strip_prefix(b"text:\n").unwrap_or(s).to_vec()
            })
            .filter(|m| !m.iter().all(u8::is_ascii_whitespace))
            .collect()
    }

    /// The `[smtp]` table for this stack's Postfix, over STARTTLS.
    pub fn smtp_config(&self, from: &str) -> String {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\nca_file = \"{}\"\nfrom = \"{from}\"\n",
            self.smtp_port.expect("started with smtp"),
            self.cert.display()
        )
    }

    fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("doveadm");
        if let Some(bytes) = stdin {
            child.stdin.take().unwrap().write_all(bytes).unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Puts a message straight into a mailbox (no SMTP involved).
    pub fn append(&self, user: &str, mailbox: &str, message: &[u8]) {
        self.doveadm(&["save", "-u", user, "-m", mailbox], Some(message));
    }

    /// Puts many messages into a user's INBOX at once, delivered straight
    /// into its Maildir the Maildir way (written in tmp/, renamed into
    /// new/), since one `doveadm save` each would take minutes for a
    /// thousand; Dovecot finds them at its next look, also while it runs.
    pub fn fill(&self, user: &str, messages: &[Vec<u8>]) {
        use std::os::unix::fs::MetadataExt;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static DELIVERED: AtomicUsize = AtomicUsize::new(0);
        // Dovecot creates the Maildir, so that its owner is right.
        self.count(user, "INBOX");
        let (local, domain) = user.split_once('@').expect("user@domain");
        let maildir = self
            .dir
            .path()
            .join("mail")
            .join(domain)
            .join(local)
            .join("Maildir");
        let owner = std::fs::metadata(&maildir).expect("the user's Maildir");
        for sub in ["tmp", "new"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for m in messages {
            let n = DELIVERED.fetch_add(1, Ordering::SeqCst);
            // A distinct pid part in each name, as deliveries have: with one
            // shared by thousands of files, Dovecot's MOVE and FETCH slow down
            // tenfold.
            let pid = u64::from(std::process::id()) * 1_000_000 + n as u64;
            let name = format!("{}.M{n}P{pid}.fill", 1_700_000_000 + n);
            let tmp = maildir.join("tmp").join(&name);
            std::fs::write(&tmp, m).unwrap();
            std::os::unix::fs::chown(&tmp, Some(owner.uid()), Some(owner.gid())).unwrap();
            std::fs::rename(&tmp, maildir.join("new").join(&name)).unwrap();
        }
    }

    /// Number of messages in a mailbox (0 when it does not exist).
    pub fn count(&self, user: &str, mailbox: &str) -> usize {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args([
                "-f", "flow", "mailbox", "status", "-u", user, "messages", mailbox,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .find_map(|t| t.strip_prefix("messages="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    pub fn create_mailbox(&self, user: &str, mailbox: &str) {
        self.doveadm(&["mailbox", "create", "-u", user, mailbox], None);
    }

    pub fn delete_mailbox(&self, user: &str, mailbox: &str) {
        self.doveadm(
            &["mailbox", "delete", "-u", user, "-r", "-s", mailbox],
            None,
        );
    }

    /// Header values of every message in a mailbox, one entry per message.
    pub fn headers(&self, user: &str, mailbox: &str, header: &str) -> Vec<String> {
        let field = format!("hdr.{}", header.to_ascii_lowercase());
        let out = self.doveadm(
            &[
                "-f", "flow", "fetch", "-u", user, &field, "mailbox", mailbox, "all",
            ],
            None,
        );
        out.lines()
            .filter_map(|l| l.split_once('=').map(|(_, v)| v.trim().to_string()))
            .collect()
    }

    /// The `[brokerages.imap]` table for `user` over implicit TLS, trusting
    /// this stack's certificate; the password goes to a file beside it.
    pub fn imap_config(&self, user: &str, extra: &str) -> String {
        let password_file = self.dir.path().join(format!("{user}.pass"));
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        format!(
            "  [brokerages.imap]\n  host = \"127.0.0.1\"\n  port = {}\n  tls = \"implicit\"\n  ca_file = \"{}\"\n  username = \"{user}\"\n  password_file = \"{}\"\n{extra}\n",
            self.imaps_port,
            self.cert.display(),
            password_file.display()
        )
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .env("MAILSTACK_FAST_STOP", "1")
            .output();
    }
}
