//! What the daemon counts, and whether it is healthy.
//!
//! One `Metrics` per process, shared by the pipeline (outcomes, leads), the
//! daemon (fetches, time to lead, inbox state) and the notification sender.
//! It is exposition-ready (`encode` gives the Prometheus text format) and
//! knows each inbox's last success, from which `health` judges the process.
//! Labels carry brokerage ids, sources and kinds: never contact data.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::pipeline::{IngestReport, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BrokerageLabel {
    brokerage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    brokerage: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeadLabels {
    brokerage: String,
    source: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Time-to-lead buckets, in seconds: IDLE pushes in about half a second, a
/// poll takes up to its interval, a backlog longer.
const TIME_TO_LEAD_BUCKETS: [f64; 12] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
];

/// What is known of one inbox in this process.
#[derive(Debug, Clone, Default)]
struct InboxState {
    connected: bool,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
    /// How long a healthy inbox may go without a success (its wait plus grace).
    stale_after: Duration,
}

pub struct Metrics {
    registry: Registry,
    fetched: Family<BrokerageLabel, Counter>,
    messages: Family<OutcomeLabels, Counter>,
    leads: Family<LeadLabels, Counter>,
    notifications: Family<ResultLabel, Counter>,
    time_to_lead: Histogram,
    inbox_connected: Family<BrokerageLabel, Gauge>,
    inbox_last_success: Family<BrokerageLabel, Gauge<f64, AtomicU64>>,
    inboxes: Mutex<BTreeMap<String, InboxState>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("leadmail");
        let fetched = Family::<BrokerageLabel, Counter>::default();
        registry.register(
            "messages_fetched",
            "Messages read from an inbox",
            fetched.clone(),
        );
        let messages = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "messages",
            "Messages processed, by outcome (created, duplicate, repeat, ignored, quarantined)",
            messages.clone(),
        );
        let leads = Family::<LeadLabels, Counter>::default();
        registry.register(
            "leads",
            "Leads created, by source and routing kind (direct, general)",
            leads.clone(),
        );
        let notifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "notifications",
            "Notification delivery attempts, by result (sent, failed)",
            notifications.clone(),
        );
        let time_to_lead = Histogram::new(TIME_TO_LEAD_BUCKETS);
        registry.register(
            "time_to_lead_seconds",
            "From the mail server's acceptance of a lead message to the lead's commit",
            time_to_lead.clone(),
        );
        let inbox_connected = Family::<BrokerageLabel, Gauge>::default();
        registry.register(
            "inbox_connected",
            "1 while the inbox's IMAP connection is up",
            inbox_connected.clone(),
        );
        let inbox_last_success = Family::<BrokerageLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "inbox_last_success_timestamp_seconds",
            "When the inbox was last checked completely (Unix time)",
            inbox_last_success.clone(),
        );
        Metrics {
            registry,
            fetched,
            messages,
            leads,
            notifications,
            time_to_lead,
            inbox_connected,
            inbox_last_success,
            inboxes: Mutex::new(BTreeMap::new()),
        }
    }

    /// The Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts committed outcomes (and, for created leads, source and kind).
    pub fn committed(&self, reports: &[IngestReport]) {
        for report in reports {
            let brokerage = report.brokerage.clone().unwrap_or_default();
            self.messages
                .get_or_create(&OutcomeLabels {
                    brokerage: brokerage.clone(),
                    outcome: report.outcome.as_str().to_string(),
                })
                .inc();
            if report.outcome == Outcome::Created {
                let kind = report.routing.as_ref().map_or("none", |r| r.kind.as_str());
                self.leads
                    .get_or_create(&LeadLabels {
                        brokerage,
                        source: report.source.clone().unwrap_or_else(|| "unknown".into()),
                        kind: kind.to_string(),
                    })
                    .inc();
            }
        }
    }

    pub fn fetched(&self, brokerage: &str, n: usize) {
        self.fetched
            .get_or_create(&BrokerageLabel {
                brokerage: brokerage.to_string(),
            })
            .inc_by(n as u64);
    }

    pub fn time_to_lead(&self, seconds: f64) {
        self.time_to_lead.observe(seconds.max(0.0));
    }

    pub fn notification(&self, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.notifications
            .get_or_create(&ResultLabel {
                result: result.to_string(),
            })
            .inc();
    }

    /// Declares an inbox this process watches (unhealthy until its first success).
    pub fn watch_inbox(&self, brokerage: &str, stale_after: Duration) {
        self.with_inbox(brokerage, |s| s.stale_after = stale_after);
        self.set_connected(brokerage, false);
    }

    /// This process stopped working the inbox (its lease went to another
    /// instance, or shutdown): its health is no longer this process's business.
    pub fn unwatch_inbox(&self, brokerage: &str) {
        let mut guard = match self.inboxes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.remove(brokerage);
        drop(guard);
        self.set_connected(brokerage, false);
    }

    pub fn inbox_connected(&self, brokerage: &str, connected: bool, error: Option<&str>) {
        self.with_inbox(brokerage, |s| {
            s.connected = connected;
            if let Some(e) = error {
                s.last_error = Some(e.to_string());
            }
        });
        self.set_connected(brokerage, connected);
    }

    /// The inbox was checked completely (drained, or woken from IDLE on a live connection).
    pub fn inbox_success(&self, brokerage: &str) {
        let now = SystemTime::now();
        self.with_inbox(brokerage, |s| {
            s.connected = true;
            s.last_success = Some(now);
            s.last_error = None;
        });
        self.set_connected(brokerage, true);
        self.inbox_last_success
            .get_or_create(&BrokerageLabel {
                brokerage: brokerage.to_string(),
            })
            .set(unix_seconds(now));
    }

    /// Whether every watched inbox has succeeded recently, as of `now`.
    pub fn health(&self, now: SystemTime) -> Health {
        let inboxes = match self.inboxes.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        health(&inboxes, now)
    }

    fn set_connected(&self, brokerage: &str, connected: bool) {
        self.inbox_connected
            .get_or_create(&BrokerageLabel {
                brokerage: brokerage.to_string(),
            })
            .set(i64::from(connected));
    }

    fn with_inbox(&self, brokerage: &str, f: impl FnOnce(&mut InboxState)) {
        let mut guard = match self.inboxes.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(guard.entry(brokerage.to_string()).or_default());
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The answer of `/healthz`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Health {
    pub healthy: bool,
    pub inboxes: Vec<InboxHealth>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InboxHealth {
    pub brokerage: String,
    pub healthy: bool,
    pub connected: bool,
    /// Seconds since the last complete check, if there was one.
    pub seconds_since_success: Option<u64>,
    /// Why it is unhealthy (absent when healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn health(inboxes: &BTreeMap<String, InboxState>, now: SystemTime) -> Health {
    let inboxes: Vec<InboxHealth> = inboxes
        .iter()
        .map(|(brokerage, s)| {
            let since = s
                .last_success
                .map(|t| now.duration_since(t).unwrap_or_default());
            let reason = match since {
                None => Some(match &s.last_error {
                    Some(e) => format!("no successful check yet; last error: {e}"),
                    None => "no successful check yet".to_string(),
                }),
                Some(d) if d > s.stale_after => Some(format!(
                    "no successful check for {}s (limit {}s){}",
                    d.as_secs(),
                    s.stale_after.as_secs(),
                    s.last_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                )),
                // A clean logout between runs is not a failure; a dropped connection is.
                Some(_) if !s.connected => {
                    s.last_error.as_ref().map(|e| format!("disconnected: {e}"))
                }
                Some(_) => None,
            };
            InboxHealth {
                brokerage: brokerage.clone(),
                healthy: reason.is_none(),
                connected: s.connected,
                seconds_since_success: since.map(|d| d.as_secs()),
                reason,
            }
        })
        .collect();
    Health {
        healthy: inboxes.iter().all(|i| i.healthy),
        inboxes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(connected: bool, ago: Option<u64>, error: Option<&str>) -> InboxState {
        let now = SystemTime::now();
        InboxState {
            connected,
            last_success: ago.map(|s| now - Duration::from_secs(s)),
            last_error: error.map(str::to_string),
            stale_after: Duration::from_secs(60),
        }
    }

    fn judge(s: InboxState) -> InboxHealth {
        let map = BTreeMap::from([("acme".to_string(), s)]);
        let h = health(&map, SystemTime::now());
        assert_eq!(h.healthy, h.inboxes[0].healthy);
        h.inboxes[0].clone()
    }

    #[test]
    fn an_inbox_is_healthy_only_after_a_recent_success() {
        assert!(!judge(state(false, None, None)).healthy);
        let never = judge(state(false, None, Some("connection refused")));
        assert!(never.reason.unwrap().contains("connection refused"));
        assert!(judge(state(true, Some(5), None)).healthy);
        let stale = judge(state(true, Some(120), None));
        assert!(!stale.healthy);
        assert!(stale.reason.unwrap().contains("120s"));
    }

    #[test]
    fn a_dropped_connection_is_unhealthy_until_it_recovers() {
        let dropped = judge(state(false, Some(5), Some("connection reset")));
        assert!(!dropped.healthy);
        assert!(dropped.reason.unwrap().contains("connection reset"));
        // A clean logout (no error) between runs is not a failure.
        assert!(judge(state(false, Some(5), None)).healthy);
    }

    #[test]
    fn no_inboxes_is_healthy() {
        assert!(health(&BTreeMap::new(), SystemTime::now()).healthy);
    }

    #[test]
    fn encoding_names_the_counters() {
        let m = Metrics::new();
        m.fetched("acme", 3);
        m.notification(true);
        m.time_to_lead(0.7);
        m.inbox_success("acme");
        let text = m.encode();
        assert!(text.contains("leadmail_messages_fetched_total{brokerage=\"acme\"} 3"));
        assert!(text.contains("leadmail_notifications_total{result=\"sent\"} 1"));
        assert!(text.contains("leadmail_time_to_lead_seconds_bucket{le=\"1.0\"} 1"));
        assert!(text.contains("leadmail_inbox_connected{brokerage=\"acme\"} 1"));
    }
}
