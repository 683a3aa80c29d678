//! The pipeline: one raw message through parse -> route -> store.
//!
//! This is the only place that knows the order of the stages. Parsing and
//! routing are pure; the store transaction brackets the routing decision so
//! that dedupe, the round-robin cursor and the inserts commit together or not
//! at all. Every message ends with exactly one stored outcome: nothing is
//! dropped, and a message seen before is reported as a duplicate.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{BrokerageConfig, Config};
use crate::lead::{ParsedMessage, Verdict};
use crate::metrics::Metrics;
use crate::notify;
use crate::parse::{self, ParseOptions};
use crate::route::{self, Directory, RoutingDecision};
use crate::source::RawMessage;
use crate::store::{NewLead, NewMessage, NewNotification, Store, StoreError, now};

mod offers;
pub use offers::{OfferActError, OfferAction, OfferOutcome};

/// What became of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Duplicate,
    /// The same person asked again within the dedupe window: attached to their lead.
    Repeat,
    Ignored,
    Quarantined,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Duplicate => "duplicate",
            Outcome::Repeat => "repeat",
            Outcome::Ignored => "ignored",
            Outcome::Quarantined => "quarantined",
        }
    }
}

/// The routing part of an ingest report (the contract of `ingest --format json`).
#[derive(Debug, Clone, Serialize)]
pub struct RoutingSummary {
    pub kind: route::RouteKind,
    pub owner: String,
    pub user: String,
    pub rule: Option<String>,
    pub reason: String,
}

impl From<&RoutingDecision> for RoutingSummary {
    fn from(d: &RoutingDecision) -> Self {
        RoutingSummary {
            kind: d.kind,
            owner: d.owner.clone(),
            user: d.user.clone(),
            rule: d.rule.clone(),
            reason: d.reason.clone(),
        }
    }
}

/// One line of `ingest` output.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub input: String,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub brokerage: Option<String>,
    pub lead_id: Option<i64>,
    pub routing: Option<RoutingSummary>,
    /// The parse result, for people-facing output; not part of the JSON contract.
    #[serde(skip)]
    pub source: Option<String>,
    /// How the message is filed: its own outcome, or for a duplicate the
    /// earlier one's (`Quarantined` or not). Decides where a mailbox puts it.
    #[serde(skip)]
    pub filed_as: Outcome,
}

impl IngestReport {
    /// Whether the message belongs in the quarantine folder.
    pub fn is_quarantined(&self) -> bool {
        self.filed_as == Outcome::Quarantined
    }
}

/// How a message enters the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// Newly read.
    New,
    /// A stored, quarantined message processed again (its row id).
    Replay(i64),
    /// Kept without reading it, for this reason.
    Quarantine(&'a str),
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("message {0} is not in quarantine")]
    NotQuarantined(i64),
}

/// Runs messages through the stages against one configuration and store.
pub struct Pipeline {
    config: Config,
    store: Store,
    options: ParseOptions,
    /// Woken after a commit that queued notifications (the sender waits on it).
    outbox: std::sync::Arc<tokio::sync::Notify>,
    metrics: std::sync::Arc<Metrics>,
    /// Signs the links in offer emails (`[http] offer_secret_*`).
    offer_secret: Option<String>,
}

impl Pipeline {
    pub fn new(config: Config, store: Store) -> Pipeline {
        let options = ParseOptions::from_config(&config.parse);
        let offer_secret = config.http.offer_secret().unwrap_or_else(|e| {
            tracing::warn!(message = "No offer links: the offer secret cannot be read.", error = %e);
            None
        });
        Pipeline {
            offer_secret,
            config,
            store,
            options,
            outbox: std::sync::Arc::new(tokio::sync::Notify::new()),
            metrics: std::sync::Arc::new(Metrics::new()),
        }
    }

    /// The secret that signs offer links, if one is configured.
    pub fn offer_secret(&self) -> Option<&str> {
        self.offer_secret.as_deref()
    }

    /// The process's counters (shared with the daemon, the sender and `/metrics`).
    pub fn metrics(&self) -> &std::sync::Arc<Metrics> {
        &self.metrics
    }

    /// What the notification sender waits on.
    pub fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.outbox.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Parses, routes and stores one message. `brokerage` forces the brokerage
    /// (e.g. the inbox it was read from); otherwise the recipients decide.
    pub async fn ingest(
        &self,
        raw: &RawMessage,
        brokerage: Option<&str>,
    ) -> Result<IngestReport, PipelineError> {
        self.process(raw, brokerage, Entry::New).await
    }

    /// Keeps a message without reading it (over the size limit, say): it is
    /// stored and counted as quarantined, and can be replayed.
    pub async fn quarantine(
        &self,
        raw: &RawMessage,
        brokerage: &str,
        reason: &str,
    ) -> Result<IngestReport, PipelineError> {
        self.process(raw, Some(brokerage), Entry::Quarantine(reason))
            .await
    }

    /// Runs a stored, quarantined message through the pipeline again (after a
    /// parser fix or a configuration change), without fetching it anew.
    pub async fn replay(&self, message_row: i64) -> Result<IngestReport, PipelineError> {
        let stored = self
            .store
            .stored_message(message_row)
            .await?
            .ok_or(PipelineError::NotQuarantined(message_row))?;
        if stored.outcome != Outcome::Quarantined.as_str() {
            return Err(PipelineError::NotQuarantined(message_row));
        }
        let raw = RawMessage {
            origin: stored.origin,
            bytes: stored.raw,
        };
        let brokerage = (!stored.brokerage_key.is_empty()).then_some(stored.brokerage_key);
        self.process(&raw, brokerage.as_deref(), Entry::Replay(message_row))
            .await
    }

    async fn process(
        &self,
        raw: &RawMessage,
        brokerage: Option<&str>,
        entry: Entry<'_>,
    ) -> Result<IngestReport, PipelineError> {
        // Parsed before the transaction: the database lock is held for the writes only.
        let parsed = parse::parse(&raw.bytes, &self.options);
        let mut tx = self.store.begin().await?;
        let (report, queued) = self
            .process_in(&mut tx, raw, parsed, brokerage, entry)
            .await?;
        tx.commit().await?;
        if queued {
            self.outbox.notify_one();
        }
        committed(&self.metrics, std::slice::from_ref(&report));
        Ok(report)
    }

    /// Processes messages of one brokerage's inbox in a single transaction
    /// (group commit: one durable commit for the batch). Either every
    /// message's outcome is committed, or none is.
    pub async fn ingest_batch(
        &self,
        batch: &[(RawMessage, Entry<'_>)],
        brokerage: &str,
    ) -> Result<Vec<IngestReport>, PipelineError> {
        // Parsed before the transaction: the database lock is held for the
        // writes only. (Parsing on several threads was tried: 10-15% faster,
        // but each thread grows its own regex caches, doubling peak memory.)
        let parsed: Vec<ParsedMessage> = batch
            .iter()
            .map(|(raw, _)| parse::parse(&raw.bytes, &self.options))
            .collect();
        let mut tx = self.store.begin().await?;
        let mut reports = Vec::with_capacity(batch.len());
        let mut queued = false;
        for ((raw, entry), parsed) in batch.iter().zip(parsed) {
            let (report, q) = self
                .process_in(&mut tx, raw, parsed, Some(brokerage), *entry)
                .await?;
            queued |= q;
            reports.push(report);
        }
        tx.commit().await?;
        if queued {
            self.outbox.notify_one();
        }
        committed(&self.metrics, &reports);
        Ok(reports)
    }

    /// One message inside the caller's transaction; returns its report and
    /// whether notifications were queued.
    async fn process_in(
        &self,
        tx: &mut crate::store::StoreTx,
        raw: &RawMessage,
        parsed: ParsedMessage,
        brokerage: Option<&str>,
        entry: Entry<'_>,
    ) -> Result<(IngestReport, bool), PipelineError> {
        let brokerage = match brokerage {
            Some(id) => self.config.brokerage(id),
            None => find_brokerage(&self.config.brokerages, &parsed.envelope.recipients),
        };
        let sha256 = hex(&Sha256::digest(&raw.bytes));
        let dedupe_key = match &parsed.message_id {
            Some(id) => format!("mid:{id}"),
            None => format!("sha256:{sha256}"),
        };
        let brokerage_key = brokerage.map_or("", |b| b.id.as_str());
        let (mut outcome, reason) = match (entry, brokerage, parsed.verdict) {
            (Entry::Quarantine(why), _, _) => (Outcome::Quarantined, Some(why.to_string())),
            (_, None, _) => (
                Outcome::Quarantined,
                Some(
                    "no brokerage: none of the recipients is a configured lead address".to_string(),
                ),
            ),
            (_, Some(_), Verdict::Lead) => (Outcome::Created, None),
            (_, Some(_), Verdict::Ignored) => (Outcome::Ignored, parsed.reason.clone()),
            (_, Some(_), Verdict::Unparseable) => (Outcome::Quarantined, parsed.reason.clone()),
        };
        let report = |outcome, reason, lead_id, routing, filed_as| IngestReport {
            input: raw.origin.clone(),
            outcome,
            reason,
            brokerage: brokerage.map(|b| b.id.clone()),
            lead_id,
            routing,
            source: Some(parsed.source.clone()),
            filed_as,
        };

        let existing = tx.existing_message(brokerage_key, &dedupe_key).await?;
        if let Some(existing) = existing.filter(|e| entry != Entry::Replay(e.id)) {
            if let Entry::Replay(row) = entry {
                // The message reached us again meanwhile and was filed then.
                tx.refile_message(row, "", "duplicate", Some("replayed: a duplicate"), None)
                    .await?;
            }
            let earlier = match existing.outcome.as_str() {
                "quarantined" => Outcome::Quarantined,
                _ => Outcome::Created,
            };
            let why = match existing.lead_id {
                Some(id) => format!("already processed: lead {id}"),
                None => format!("already processed: {}", existing.outcome),
            };
            return Ok((
                report(
                    Outcome::Duplicate,
                    Some(why),
                    existing.lead_id,
                    None,
                    earlier,
                ),
                false,
            ));
        }

        let repeat_of = match (outcome, brokerage) {
            (Outcome::Created, Some(b)) => {
                let since = crate::store::time_before(std::time::Duration::from_secs(
                    u64::from(b.routing.dedupe_window_days) * 86_400,
                ));
                tx.find_repeat(&b.id, &parsed.contact, &since).await?
            }
            _ => None,
        };
        if repeat_of.is_some() {
            outcome = Outcome::Repeat;
        }
        let message_row = match entry {
            Entry::Replay(row) => {
                tx.refile_message(
                    row,
                    brokerage_key,
                    outcome.as_str(),
                    reason.as_deref(),
                    repeat_of,
                )
                .await?;
                row
            }
            Entry::New | Entry::Quarantine(_) => {
                tx.insert_message(&NewMessage {
                    brokerage_key,
                    dedupe_key: &dedupe_key,
                    sha256: &sha256,
                    message_id: parsed.message_id.as_deref(),
                    origin: &raw.origin,
                    outcome: outcome.as_str(),
                    reason: reason.as_deref(),
                    raw: &raw.bytes,
                    lead_id: repeat_of,
                })
                .await?
            }
        };

        let mut lead_id = repeat_of;
        let mut routing = None;
        let mut queued = false;
        match (outcome, brokerage, repeat_of) {
            (Outcome::Repeat, Some(b), Some(id)) => {
                let note = format!("asked again via {}", parsed.source);
                tx.add_event(
                    id,
                    &now(),
                    "repeat_inquiry",
                    "leadmail",
                    None,
                    None,
                    Some(&note),
                )
                .await?;
                let (_, user) = tx.lead_agents(id).await?;
                if let Some(n) =
                    notify::repeat_notification(&self.config, b, id, message_row, &user, &parsed)
                {
                    queued |= tx.queue_notification(&n).await?;
                }
            }
            (Outcome::Created, Some(b), _) => {
                let (id, decision, notes) = self.create_lead(tx, b, message_row, &parsed).await?;
                // Written with the lead: a crash can lose neither without the other.
                for n in notes {
                    queued |= tx.queue_notification(&n).await?;
                }
                lead_id = Some(id);
                routing = Some(RoutingSummary::from(&decision));
            }
            _ => {}
        }
        let reason = match (outcome, repeat_of) {
            (Outcome::Repeat, Some(id)) => Some(format!("repeat inquiry: attached to lead {id}")),
            _ => reason,
        };
        Ok((report(outcome, reason, lead_id, routing, outcome), queued))
    }

    async fn create_lead(
        &self,
        tx: &mut crate::store::StoreTx,
        brokerage: &BrokerageConfig,
        message_row: i64,
        parsed: &ParsedMessage,
    ) -> Result<(i64, RoutingDecision, Vec<NewNotification>), PipelineError> {
        let directory = Directory::from_config(brokerage);
        let cursors = tx.cursors(&brokerage.id).await?;
        let at = now();
        let halts = tx.active_halts(&brokerage.id, &at).await?;
        let aways = tx.active_aways(&brokerage.id, &at).await?;
        let address_key = parsed
            .property
            .address
            .as_deref()
            .and_then(route::address::key);
        let listing_agent = if parsed.property.mls_number.is_some() || address_key.is_some() {
            tx.listing_agent(
                &brokerage.id,
                parsed.property.mls_number.as_deref(),
                address_key.as_deref(),
            )
            .await?
        } else {
            None
        };
        let decision = route::route(route::RouteInput {
            lead: parsed,
            directory: &directory,
            halts: &halts,
            aways: &aways,
            general_only: false,
            cursors: &cursors,
            listing_agent: listing_agent.as_deref(),
        });
        if let Some(c) = decision.cursor() {
            tx.set_cursor(&brokerage.id, &c.pool, c.after).await?;
        }
        let id = tx
            .insert_lead(&NewLead {
                brokerage_id: &brokerage.id,
                message_row,
                lead: parsed,
                decision: &decision,
            })
            .await?;
        if let Some(agent) = &decision.delegated_from {
            let by = aways
                .iter()
                .find(|a| &a.agent == agent)
                .map_or(agent.as_str(), |a| a.by.as_str());
            tx.add_event(
                id,
                &at,
                "delegated",
                by,
                Some(agent),
                Some(&decision.user),
                Some("out of office: the delegate works it, the agent keeps it"),
            )
            .await?;
        }
        let notes = match &decision.offer {
            Some(plan) => {
                let available = |agent: &str| {
                    directory.agent(agent).is_some_and(|a| a.active)
                        && !halts.iter().any(|h| h.agent == agent)
                        && !aways.iter().any(|a| a.agent == agent)
                };
                self.open_first_offers(tx, brokerage, id, plan, parsed, &available)
                    .await?
            }
            None => notify::lead_notifications(&self.config, brokerage, id, parsed, &decision)
                .into_iter()
                .filter(|n| !aways.iter().any(|a| a.agent == n.agent_id))
                .collect(),
        };
        Ok((id, decision, notes))
    }
}

/// The brokerage whose lead address is among the recipients. Plus-addressing
/// (`leads+zillow@...`) matches the base address.
/// Logs and counts outcomes once they are committed (never before: a batch
/// that fails to commit has created nothing). No contact data at info level.
fn committed(metrics: &Metrics, reports: &[IngestReport]) {
    for r in reports {
        tracing::info!(
            message = "Message processed.",
            origin = %r.input,
            outcome = r.outcome.as_str(),
            brokerage = r.brokerage.as_deref().unwrap_or(""),
            source = r.source.as_deref().unwrap_or(""),
            lead_id = r.lead_id,
            reason = r.reason.as_deref().unwrap_or("")
        );
    }
    metrics.committed(reports);
}

pub fn find_brokerage<'a>(
    brokerages: &'a [BrokerageConfig],
    recipients: &[String],
) -> Option<&'a BrokerageConfig> {
    recipients.iter().find_map(|r| {
        let base = strip_plus_tag(r);
        brokerages
            .iter()
            .find(|b| b.lead_addresses.iter().any(|a| *a == *r || *a == base))
    })
}

/// `local+tag@domain` -> `local@domain`.
pub fn strip_plus_tag(addr: &str) -> String {
    match addr.split_once('@') {
        Some((local, domain)) => {
            let local = local.split('+').next().unwrap_or(local);
            format!("{local}@{domain}")
        }
        None => addr.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_tags_are_stripped() {
        assert_eq!(
            strip_plus_tag("leads+zillow@acme.example"),
            "leads@acme.example"
        );
        assert_eq!(strip_plus_tag("leads@acme.example"), "leads@acme.example");
    }
}
