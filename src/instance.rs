//! This process among the `leadmail run` instances that share a database:
//! its name in inbox leases and notification claims, and whether another
//! instance named there is known to be gone.

use crate::config::DaemonConfig;

/// This instance's name: `daemon.instance`, or host and pid.
pub fn name(config: &DaemonConfig) -> String {
    config.instance.clone().unwrap_or_else(default_name)
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}:{}", std::process::id())
}

/// Whether `holder` names a leadmail process of this host (the default
/// "host:pid" name) that no longer runs: what it held need not be waited
/// out. An instance on another host is only known dead when its lease or
/// claim runs out.
pub fn exited_here(holder: &str) -> bool {
    let Some((host, pid)) = holder.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    let this = default_name();
    let this_host = this.rsplit_once(':').map_or("", |(h, _)| h);
    if host != this_host || pid == std::process::id() {
        return false;
    }
    // Gone, or the pid now belongs to something that is not leadmail.
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.trim() != "leadmail",
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}
