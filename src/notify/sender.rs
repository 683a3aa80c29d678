//! Delivers the outbox over SMTP (lettre): due rows are sent, then marked
//! sent; temporary failures are retried with backoff, permanent ones marked
//! failed and shown by `leadmail status`. Also queues the quarantine digests.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::{Notify, watch};

use super::render;
use crate::config::{Config, Role, SmtpConfig, TlsMode};
use crate::metrics::Metrics;
use crate::parse::NOTIFICATION_HEADER;
use crate::store::{NewNotification, Notification, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("SMTP settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Longest wait between retries of one notification.
const MAX_RETRY: Duration = Duration::from_secs(30 * 60);

pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    store: Store,
    metrics: Option<Arc<Metrics>>,
    /// How long a notification being sent is withheld from every other
    /// sender (several `leadmail run` share one outbox): far longer than
    /// one SMTP transaction takes.
    claim: Duration,
    /// This instance's name on its claims.
    instance: String,
}

impl Sender {
    /// A sender for `smtp` that claims each notification it sends for
    /// `daemon.send_claim`, in the name of `daemon.instance`.
    pub fn new(
        smtp: &SmtpConfig,
        daemon: &crate::config::DaemonConfig,
        store: Store,
    ) -> Result<Sender, NotifyError> {
        let settings = |e: &dyn std::fmt::Display| NotifyError::Settings(e.to_string());
        let from: Mailbox = smtp.from.parse().map_err(|e| settings(&e))?;
        let tls_parameters = || -> Result<TlsParameters, NotifyError> {
            let mut b = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| NotifyError::Settings(format!("{}: {e}", path.display())))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| settings(&e))?);
            }
            b.build_rustls().map_err(|e| settings(&e))
        };
        let tls = match smtp.tls {
            TlsMode::Implicit => Tls::Wrapper(tls_parameters()?),
            TlsMode::Starttls => Tls::Required(tls_parameters()?),
            TlsMode::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(30)));
        if let Some(user) = &smtp.username {
            let password = smtp
                .password()
                .map_err(|e| settings(&e))?
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Sender {
            transport: builder.build(),
            from,
            store,
            metrics: None,
            claim: daemon.send_claim,
            instance: crate::instance::name(daemon),
        })
    }

    /// Counts deliveries in the daemon's metrics.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Sender {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, sent: bool) {
        if let Some(m) = &self.metrics {
            m.notification(sent);
        }
    }

    /// Sends every due notification once; returns how many were sent.
    pub async fn deliver_due(&self) -> Result<usize, NotifyError> {
        let mut sent = 0;
        // What a crashed instance of this host was sending need not wait for
        // its claim to run out.
        for claimer in self.store.notification_claimers().await? {
            if crate::instance::exited_here(&claimer) {
                let released = self.store.release_claims(&claimer).await?;
                tracing::info!(message = "Released the notifications of an exited instance.", instance = %claimer, released);
            }
        }
        loop {
            let due = self.store.due_notifications(20).await?;
            if due.is_empty() {
                return Ok(sent);
            }
            let mut progressed = false;
            for n in due {
                if !self
                    .store
                    .claim_notification(n.id, &self.instance, self.claim)
                    .await?
                {
                    // Another instance is sending it.
                    continue;
                }
                match self.send(&n).await {
                    Ok(()) => {
                        self.count(true);
                        self.store.mark_sent(n.id).await?;
                        tracing::info!(message = "Notification sent.", notification = n.id, lead_id = n.lead_id, kind = %n.kind);
                        sent += 1;
                        progressed = true;
                    }
                    Err(Failure::Permanent(e)) => {
                        self.count(false);
                        tracing::warn!(message = "Notification refused; not retried.", notification = n.id, error = %e);
                        self.store.mark_attempt_failed(n.id, &e, None).await?;
                        progressed = true;
                    }
                    Err(Failure::Temporary(e)) => {
                        self.count(false);
                        let wait = retry_delay(n.attempts);
                        tracing::warn!(message = "Notification not sent; will retry.", notification = n.id, error = %e, retry_in = ?wait);
                        let at = crate::store::time_after(wait);
                        self.store.mark_attempt_failed(n.id, &e, Some(&at)).await?;
                        // The server is likely down: stop this pass.
                        return Ok(sent);
                    }
                }
            }
            if !progressed {
                return Ok(sent);
            }
        }
    }

    async fn send(&self, n: &Notification) -> Result<(), Failure> {
        let to: Mailbox = n
            .recipient
            .parse()
            .map_err(|e| Failure::Permanent(format!("recipient {}: {e}", n.recipient)))?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(render::header_text(&n.subject))
            .message_id(Some(format!("<{}>", n.message_id)));
        if let Some(reply) = n
            .reply_to
            .as_deref()
            .and_then(|r| r.parse::<Mailbox>().ok())
        {
            builder = builder.reply_to(reply);
        }
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        builder = builder
            .raw_header(header("Auto-Submitted", "auto-generated".to_string()))
            .raw_header(header(
                NOTIFICATION_HEADER,
                format!(
                    "{}{}",
                    n.kind,
                    n.lead_id
                        .map(|id| format!("; lead={id}"))
                        .unwrap_or_default()
                ),
            ));
        let message = builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .body(n.body_text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .body(n.body_html.clone()),
                    ),
            )
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(Failure::Permanent(e.to_string())),
            Err(e) => Err(Failure::Temporary(e.to_string())),
        }
    }

    /// Delivers what is due until nothing is, or `limit` has passed; returns
    /// how many are still pending.
    pub async fn flush(&self, limit: Duration) -> Result<i64, NotifyError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            self.deliver_due().await?;
            let pending = self.store.outbox_status().await?.pending;
            let due_now = self
                .store
                .next_notification_due()
                .await?
                .is_some_and(|t| t <= crate::store::now());
            if pending == 0 || !due_now || tokio::time::Instant::now() >= deadline {
                return Ok(pending);
            }
        }
    }

    /// Runs until shutdown: delivers when woken (after a commit) or every few
    /// seconds, and queues quarantine digests.
    pub async fn run(
        self,
        config: Arc<Config>,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = queue_digests(&config, &self.store).await {
                tracing::warn!(message = "Cannot queue quarantine digests.", error = %e);
            }
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(message = "Cannot deliver notifications.", error = %e);
            }
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                // Last pass for what the final batch committed.
                let _ = self.flush(Duration::from_secs(5)).await;
                return;
            }
        }
    }
}

enum Failure {
    Temporary(String),
    Permanent(String),
}

/// 5 s, 10 s, 20 s ... up to 30 minutes.
fn retry_delay(attempts: i64) -> Duration {
    let exp = attempts.clamp(0, 12) as u32;
    (Duration::from_secs(5) * 2u32.pow(exp)).min(MAX_RETRY)
}

/// Queues, for each brokerage with quarantined messages since its last
/// digest and no digest in the last `quarantine_digest_minutes`, one digest
/// to each of its admins.
pub async fn queue_digests(config: &Config, store: &Store) -> Result<(), NotifyError> {
    if !super::active(config) {
        return Ok(());
    }
    let window = Duration::from_secs(u64::from(config.notify.quarantine_digest_minutes) * 60);
    let domain = super::from_domain(config);
    for b in &config.brokerages {
        let state = store.digest_state(&b.id).await?;
        let (after, last_sent) = state.clone().unwrap_or((0, String::new()));
        if state.is_some() && last_sent > crate::store::time_before(window) {
            continue;
        }
        let new = store.quarantined_since(&b.id, after).await?;
        let Some(&(last_row, _)) = new.last() else {
            continue;
        };
        let r = render::quarantine_digest(&b.name, &new);
        let notices: Vec<NewNotification> = b
            .agents
            .iter()
            .filter(|a| a.role == Role::Admin)
            .filter_map(|a| {
                Some(NewNotification {
                    brokerage_id: b.id.clone(),
                    lead_id: None,
                    kind: "digest",
                    agent_id: a.id.clone(),
                    recipient: a.emails.first()?.clone(),
                    reply_to: None,
                    subject: r.subject.clone(),
                    body_text: r.text.clone(),
                    body_html: r.html.clone(),
                    message_id: format!("leadmail.digest.{}.{last_row}.{}@{domain}", b.id, a.id),
                })
            })
            .collect();
        store.queue_digest(&b.id, last_row, &notices).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_back_off_to_a_ceiling() {
        assert_eq!(super::retry_delay(0).as_secs(), 5);
        assert_eq!(super::retry_delay(2).as_secs(), 20);
        assert_eq!(super::retry_delay(50).as_secs(), 30 * 60);
    }
}
