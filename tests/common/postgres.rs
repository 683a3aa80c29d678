//! A private PostgreSQL cluster for one test, on a free loopback port in a
//! temporary directory, stopped when dropped. Wraps `tests/harness/postgres.sh`.

use std::path::PathBuf;
use std::process::Command;

pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

fn script() -> PathBuf {
    super::root().join("tests/harness/postgres.sh")
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("lmpg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let cluster = PgCluster {
            dir,
            port: super::mailstack::free_port(),
        };
        cluster.run_script(&["start", &cluster.port.to_string()]);
        cluster
    }

    /// The URL of the cluster's `leadmail` database.
    pub fn url(&self) -> String {
        format!("postgres://leadmail@127.0.0.1:{}/leadmail", self.port)
    }

    /// Stops the server (immediate shutdown); `resume` starts it again.
    pub fn stop(&self) {
        self.run_script(&["stop"]);
    }

    pub fn resume(&self) {
        self.run_script(&["resume"]);
    }

    /// Runs one SQL statement with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|e| panic!("psql {sql}: {e}"))
    }

    /// The same, or psql's error (a table not created yet, say).
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "leadmail", "-d", "leadmail"])
            .args(["-p", &self.port.to_string(), "-XAtq", "-c", sql])
            .output()
            .expect("run psql");
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    }

    fn run_script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..])
            .output()
            .expect("run postgres.sh");
        assert!(
            out.status.success(),
            "postgres.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}
