//! `leadmail run`: one task per brokerage inbox, all concurrent.
//!
//! Each task connects, drains what is waiting in batches (fetch, process and
//! commit each message, then acknowledge the batch on the server), then waits
//! with IDLE (or polls) and drains again. A message is acknowledged only
//! after its outcome is committed; a crash in between is harmless because the
//! next run finds the message already stored (same Message-ID or bytes) and
//! only acknowledges it. One broken inbox never stops the others: it is
//! retried with exponential backoff and jitter. Shutdown (SIGTERM/SIGINT, or
//! the caller's signal) stops fetching, finishes the batch in hand, logs out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{BrokerageConfig, Config, ImapConfig};
use crate::pipeline::{Entry, IngestReport, Outcome, Pipeline, PipelineError};
use crate::source::RawMessage;
use crate::source::imap::{Disposition, ImapError, Inbox};
use crate::store::InboxEvent;

/// Messages fetched and committed (one transaction) per round trip.
const BATCH: usize = 100;
/// Committed messages acknowledged together (one MOVE).
const ACK_BATCH: usize = 1000;
/// Longest IDLE before it is re-issued (servers drop it at 29 minutes).
const MAX_IDLE: Duration = Duration::from_secs(20 * 60);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("inbox {brokerage}: {source}")]
    Imap {
        brokerage: String,
        source: ImapError,
    },
    #[error("inbox {brokerage}: {source}")]
    Pipeline {
        brokerage: String,
        source: PipelineError,
    },
    #[error("inbox {brokerage}: {message}")]
    Config { brokerage: String, message: String },
    #[error("inbox {brokerage}: the lease was lost; another instance works it now")]
    LeaseLost { brokerage: String },
    #[error("inbox {brokerage}: worked by another instance ({holder})")]
    Leased { brokerage: String, holder: String },
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Drain every inbox once and return (for cron and tests).
    pub once: bool,
}

/// What happened in a `run`.
#[derive(Debug, Default)]
pub struct RunReport {
    pub processed: u64,
    /// Inboxes that failed (with `once`, their last error).
    pub failures: Vec<DaemonError>,
}

/// Watches every configured inbox until `shutdown` turns true (or, with
/// `once`, until each has been drained once).
pub async fn run(
    config: &Config,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
    ready: impl FnOnce(usize),
) -> Result<RunReport, DaemonError> {
    let inboxes: Vec<(BrokerageConfig, ImapConfig)> = config
        .brokerages
        .iter()
        .filter_map(|b| b.imap.clone().map(|i| (b.clone(), i)))
        .collect();
    let count = inboxes.len();
    let me = Arc::new(Member {
        name: crate::instance::name(&config.daemon),
        ttl: config.daemon.lease.max(Duration::from_secs(1)),
        max_inboxes: config.daemon.max_inboxes,
        held: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = inboxes
        .into_iter()
        .map(|(b, imap)| {
            let pipeline = pipeline.clone();
            let shutdown = shutdown.clone();
            let me = me.clone();
            tokio::spawn(
                async move { watch_inbox(b, imap, pipeline, options, shutdown, &me).await },
            )
        })
        .collect();
    ready(count);
    let mut report = RunReport::default();
    for task in tasks {
        match task.await {
            Ok((processed, failure)) => {
                report.processed += processed;
                report.failures.extend(failure);
            }
            Err(e) => report.failures.push(DaemonError::Config {
                brokerage: "?".to_string(),
                message: format!("inbox task failed: {e}"),
            }),
        }
    }
    Ok(report)
}

/// This instance as a holder of inbox leases.
struct Member {
    name: String,
    ttl: Duration,
    /// `daemon.max_inboxes`: beyond it, this instance takes an inbox only
    /// once the inbox has gone unworked for a lease period (so that
    /// instances share the inboxes, and none is left unworked).
    max_inboxes: Option<usize>,
    /// Inbox leases this instance holds now.
    held: AtomicUsize,
}

impl Member {
    /// Counts one more inbox held, if that stays within `max_inboxes`.
    fn reserve(&self) -> bool {
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                self.max_inboxes.is_none_or(|m| n < m).then_some(n + 1)
            })
            .is_ok()
    }
}

/// This instance's hold on one inbox: renewed in the background; `held()`
/// turns false as soon as a renewal fails or is overdue, and `lost` fires.
struct LeaseGuard {
    valid_until: Arc<std::sync::Mutex<tokio::time::Instant>>,
    lost: watch::Receiver<bool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl LeaseGuard {
    /// Waits until this instance holds the inbox (or shutdown: None).
    /// With `once`, does not wait: an inbox held elsewhere is an error.
    async fn acquire(
        pipeline: &Arc<Pipeline>,
        id: &str,
        me: &Member,
        once: bool,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<LeaseGuard>, DaemonError> {
        let (instance, ttl) = (me.name.as_str(), me.ttl);
        let mut announced = false;
        let mut dead: Option<String> = None;
        // When this instance, at its share, first saw the inbox unworked.
        let mut unworked_since: Option<tokio::time::Instant> = None;
        // `--once` waits out a dead instance's lease, not a live one's.
        let give_up = tokio::time::Instant::now() + ttl + renew_every(ttl);
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            // A place within max_inboxes is reserved before the lease is
            // tried, so that this instance's inbox tasks, starting together,
            // do not all take one.
            let reserved = me.reserve();
            let at_share = !once && !reserved && {
                let worked = matches!(pipeline.store().lease(id).await, Ok(Some(_)));
                let since = match worked {
                    true => None,
                    false => Some(*unworked_since.get_or_insert_with(tokio::time::Instant::now)),
                };
                unworked_since = since;
                // A lease period for an instance below its share (or
                // still starting) to take the inbox first.
                since.is_none_or(|t| t.elapsed() < ttl)
            };
            let taken = match at_share {
                true => Ok(false),
                false => {
                    pipeline
                        .store()
                        .take_lease(id, instance, ttl, dead.as_deref())
                        .await
                }
            };
            match (&taken, reserved) {
                (Ok(true), false) => me.held.fetch_add(1, Ordering::SeqCst),
                (Ok(false) | Err(_), true) => me.held.fetch_sub(1, Ordering::SeqCst),
                _ => 0,
            };
            match taken {
                Ok(true) => break,
                Ok(false) if at_share => {}
                Ok(false) => {
                    let holder = match pipeline.store().lease(id).await {
                        Ok(Some(l)) => l.holder,
                        _ => "another instance".to_string(),
                    };
                    if crate::instance::exited_here(&holder) {
                        // A crashed instance on this host: no need to wait out its lease.
                        dead = Some(holder);
                        continue;
                    }
                    if once && tokio::time::Instant::now() >= give_up {
                        return Err(DaemonError::Leased {
                            brokerage: id.to_string(),
                            holder,
                        });
                    }
                    if !announced {
                        tracing::info!(message = "Inbox is worked by another instance; standing by.", brokerage = %id, holder = %holder);
                        announced = true;
                    }
                }
                Err(e) => {
                    tracing::warn!(message = "Cannot take the inbox lease; will retry.", brokerage = %id, error = %e)
                }
            }
            tokio::select! {
                () = tokio::time::sleep(renew_every(ttl)) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!(message = "Inbox lease taken.", brokerage = %id, instance = %instance);
        let valid_until = Arc::new(std::sync::Mutex::new(
            tokio::time::Instant::now() + ttl.mul_f64(0.9),
        ));
        let (lost_tx, lost) = watch::channel(false);
        let renewer = {
            let pipeline = pipeline.clone();
            let valid_until = valid_until.clone();
            let (id, instance) = (id.to_string(), instance.to_string());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(renew_every(ttl)).await;
                    let started = tokio::time::Instant::now();
                    match pipeline.store().take_lease(&id, &instance, ttl, None).await {
                        Ok(true) => {
                            if let Ok(mut v) = valid_until.lock() {
                                *v = started + ttl.mul_f64(0.9);
                            }
                        }
                        Ok(false) => {
                            tracing::warn!(message = "Inbox lease lost to another instance.", brokerage = %id);
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => {
                            let overdue = valid_until
                                .lock()
                                .map_or(true, |v| tokio::time::Instant::now() >= *v);
                            tracing::warn!(message = "Cannot renew the inbox lease.", brokerage = %id, error = %e);
                            if overdue {
                                let _ = lost_tx.send(true);
                                return;
                            }
                        }
                    }
                }
            })
        };
        Ok(Some(LeaseGuard {
            valid_until,
            lost,
            renewer,
        }))
    }

    /// Whether the lease certainly still holds (checked before acknowledging).
    fn held(&self) -> bool {
        !*self.lost.borrow()
            && self
                .valid_until
                .lock()
                .is_ok_and(|v| tokio::time::Instant::now() < *v)
    }

    async fn release(self, pipeline: &Pipeline, id: &str, me: &Member) {
        let instance = me.name.as_str();
        me.held.fetch_sub(1, Ordering::SeqCst);
        self.renewer.abort();
        if !*self.lost.borrow()
            && let Err(e) = pipeline.store().release_lease(id, instance).await
        {
            tracing::warn!(message = "Cannot release the inbox lease.", brokerage = %id, error = %e);
        }
    }
}

fn renew_every(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(200))
}

/// One inbox, forever (or once): returns messages processed and the last error.
async fn watch_inbox(
    brokerage: BrokerageConfig,
    imap: ImapConfig,
    pipeline: Arc<Pipeline>,
    options: RunOptions,
    mut shutdown: watch::Receiver<bool>,
    me: &Member,
) -> (u64, Option<DaemonError>) {
    let id = brokerage.id.clone();
    let mut backoff = BACKOFF_START;
    let mut processed = 0u64;
    loop {
        if *shutdown.borrow() {
            return (processed, None);
        }
        let lease = match LeaseGuard::acquire(&pipeline, &id, me, options.once, &mut shutdown).await
        {
            Ok(Some(lease)) => lease,
            Ok(None) => return (processed, None),
            Err(e) => return (processed, Some(e)),
        };
        // Health covers the inboxes this instance works (a standby is healthy).
        pipeline.metrics().watch_inbox(&id, stale_after(&imap));
        let result = session(
            &id,
            &imap,
            &pipeline,
            options,
            &mut shutdown,
            &mut processed,
            &lease,
        )
        .await;
        let lost = !lease.held();
        lease.release(&pipeline, &id, me).await;
        if lost {
            pipeline.metrics().unwatch_inbox(&id);
        }
        match result {
            Ok(()) => {
                if options.once || *shutdown.borrow() {
                    return (processed, None);
                }
                backoff = BACKOFF_START;
            }
            Err(e) => {
                let store = pipeline.store();
                let text = e.to_string();
                pipeline.metrics().inbox_connected(&id, false, Some(&text));
                let _ = store
                    .record_inbox(
                        &id,
                        &InboxEvent {
                            connected: Some(false),
                            error: Some(&text),
                            ..InboxEvent::default()
                        },
                    )
                    .await;
                tracing::warn!(message = "Inbox failed; will retry.", brokerage = %id, error = %text, retry_in = ?backoff);
                if options.once {
                    return (processed, Some(e));
                }
                let wait = with_jitter(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// How long this inbox may go without a complete check before `/healthz`
/// calls it unhealthy: two of its waits (IDLE or poll) and a minute's grace
/// for a long drain.
fn stale_after(imap: &ImapConfig) -> Duration {
    wait_between_checks(imap) * 2 + Duration::from_secs(60)
}

fn wait_between_checks(imap: &ImapConfig) -> Duration {
    imap.poll_interval.clamp(Duration::from_secs(1), MAX_IDLE)
}

/// Moves offers past their deadline on to the next agent (or settles their
/// leads), about once a second, until `shutdown`. Deadlines live in the
/// database, so a restart (or another process) picks up where this left off.
pub async fn offer_clock(pipeline: Arc<Pipeline>, mut shutdown: watch::Receiver<bool>) {
    loop {
        match pipeline.expire_offers().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(message = "Offers expired and handed on.", leads = n),
            Err(e) => tracing::warn!(message = "Cannot expire offers; will retry.", error = %e),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Up to 25% random extra, so that many inboxes do not retry in lockstep.
fn with_jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// One connection: drain, wait, drain... until shutdown (or once).
async fn session(
    id: &str,
    imap: &ImapConfig,
    pipeline: &Pipeline,
    options: RunOptions,
    shutdown: &mut watch::Receiver<bool>,
    processed: &mut u64,
    lease: &LeaseGuard,
) -> Result<(), DaemonError> {
    let imap_err = |source| DaemonError::Imap {
        brokerage: id.to_string(),
        source,
    };
    let password = imap.password().map_err(|e| DaemonError::Config {
        brokerage: id.to_string(),
        message: e.to_string(),
    })?;
    let mut inbox = Inbox::open(imap, &password).await.map_err(imap_err)?;
    drop(password);
    let store = pipeline.store();
    record(
        pipeline,
        id,
        InboxEvent {
            connected: Some(true),
            ..InboxEvent::default()
        },
    )
    .await;
    pipeline.metrics().inbox_connected(id, true, None);
    tracing::info!(message = "Inbox connected.", brokerage = %id, idle = inbox.can_idle());
    loop {
        drain(id, imap, &mut inbox, pipeline, shutdown, processed, lease).await?;
        if !lease.held() {
            inbox.logout().await;
            return Err(DaemonError::LeaseLost {
                brokerage: id.to_string(),
            });
        }
        if options.once || *shutdown.borrow() {
            inbox.logout().await;
            pipeline.metrics().inbox_connected(id, false, None);
            let _ = store
                .record_inbox(
                    id,
                    &InboxEvent {
                        connected: Some(false),
                        ..InboxEvent::default()
                    },
                )
                .await;
            return Ok(());
        }
        let wait = wait_between_checks(imap);
        if inbox.can_idle() {
            let mut stop = shutdown.clone();
            let mut lost = lease.lost.clone();
            inbox = inbox
                .idle(wait, async move {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => {}
                        _ = lost.wait_for(|l| *l) => {}
                    }
                })
                .await
                .map_err(imap_err)?;
        } else {
            let mut lost = lease.lost.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
                _ = lost.wait_for(|l| *l) => {}
            }
            inbox.noop().await.map_err(imap_err)?;
        }
    }
}

/// Processes everything waiting in the mailbox, batch by batch.
async fn drain(
    id: &str,
    imap: &ImapConfig,
    inbox: &mut Inbox,
    pipeline: &Pipeline,
    shutdown: &watch::Receiver<bool>,
    processed: &mut u64,
    lease: &LeaseGuard,
) -> Result<(), DaemonError> {
    let imap_err = |source| DaemonError::Imap {
        brokerage: id.to_string(),
        source,
    };
    let pipe_err = |source| DaemonError::Pipeline {
        brokerage: id.to_string(),
        source,
    };
    // What this drain acknowledged: seeing one again means the server did not
    // take the acknowledgement, and fetching it again would loop without end.
    let mut acknowledged = std::collections::HashSet::new();
    loop {
        let waiting = inbox.waiting().await.map_err(imap_err)?;
        if let Some(uid) = waiting.iter().find(|u| acknowledged.contains(*u)) {
            return Err(imap_err(ImapError::NotAcknowledged(*uid)));
        }
        if waiting.is_empty() {
            pipeline.metrics().inbox_success(id);
            record(
                pipeline,
                id,
                InboxEvent {
                    success: true,
                    oldest_waiting: Some(None),
                    ..InboxEvent::default()
                },
            )
            .await;
            return Ok(());
        }
        let mut acks = Acks::default();
        let chunks: Vec<&[u32]> = waiting.chunks(BATCH).collect();
        let batches = chunks.len();
        // The next batch is fetched while this one is parsed and committed, so
        // the server's transfer and our work overlap instead of taking turns;
        // only after a batch under half of max_batch_bytes, so that the two
        // together stay near the budget.
        let mut prefetched = None;
        for (batch_index, chunk) in chunks.iter().enumerate() {
            let fetched = match prefetched.take() {
                Some(fetched) => fetched,
                None => inbox.fetch(chunk).await.map_err(imap_err)?,
            };
            pipeline.metrics().fetched(id, fetched.len());
            let arrivals: Vec<Option<String>> = fetched.iter().map(|f| f.arrived.clone()).collect();
            let oldest = fetched.iter().filter_map(|f| f.arrived.clone()).min();
            record(
                pipeline,
                id,
                InboxEvent {
                    oldest_waiting: Some(oldest.as_deref()),
                    ..InboxEvent::default()
                },
            )
            .await;
            let reasons: Vec<Option<String>> = fetched
                .iter()
                .map(|m| {
                    m.oversized.then(|| {
                        format!(
                            "oversized: {} bytes, over max_message_bytes {}",
                            m.size, imap.max_message_bytes
                        )
                    })
                })
                .collect();
            let uids: Vec<u32> = fetched.iter().map(|m| m.uid).collect();
            let batch: Vec<(RawMessage, Entry<'_>)> = fetched
                .into_iter()
                .zip(&reasons)
                .map(|(message, reason)| {
                    let raw = RawMessage {
                        origin: format!(
                            "imap://{id}/{};UIDVALIDITY={}/;UID={}",
                            imap.mailbox, inbox.about.state.uid_validity, message.uid
                        ),
                        bytes: message.bytes,
                    };
                    let entry = match reason {
                        Some(why) => Entry::Quarantine(why),
                        None => Entry::New,
                    };
                    (raw, entry)
                })
                .collect();
            // One commit for the batch; nothing is acknowledged before it (a
            // prefetched batch is only read, and is acknowledged after its own commit).
            let batch_bytes: u64 = batch.iter().map(|(raw, _)| raw.bytes.len() as u64).sum();
            let next = chunks
                .get(batch_index + 1)
                .filter(|_| !*shutdown.borrow() && batch_bytes <= imap.max_batch_bytes / 2);
            let (reports, next) = match next {
                Some(next) => {
                    let (reports, fetched) =
                        tokio::join!(pipeline.ingest_batch(&batch, id), inbox.fetch(next));
                    (reports, Some(fetched))
                }
                None => (pipeline.ingest_batch(&batch, id).await, None),
            };
            let reports = reports.map_err(pipe_err)?;
            drop(batch);
            observe_time_to_lead(pipeline, &arrivals, &reports);
            let mut done = Vec::new();
            let mut quarantined = Vec::new();
            for (uid, report) in uids.iter().zip(&reports) {
                if report.is_quarantined() {
                    quarantined.push(*uid);
                } else {
                    done.push(*uid);
                }
            }
            acks.done.extend(done);
            acks.quarantined.extend(quarantined);
            let last = batch_index + 1 == batches;
            if acks.len() >= ACK_BATCH || last || *shutdown.borrow() {
                // Committed, but another instance may own the inbox now: leave
                // the messages to it (it will find them stored and only file them).
                if !lease.held() {
                    return Err(DaemonError::LeaseLost {
                        brokerage: id.to_string(),
                    });
                }
                acknowledged.extend(acks.done.iter().chain(&acks.quarantined).copied());
                let n = acks.flush(inbox).await.map_err(imap_err)?;
                *processed += n;
                record(
                    pipeline,
                    id,
                    InboxEvent {
                        processed: n as i64,
                        ..InboxEvent::default()
                    },
                )
                .await;
            }
            if *shutdown.borrow() {
                return Ok(());
            }
            // A failed prefetch leaves this batch committed but perhaps not yet
            // acknowledged: it comes back as a duplicate and is only filed.
            prefetched = next.transpose().map_err(imap_err)?;
        }
    }
}

/// Committed messages not yet acknowledged on the server. Acknowledging in
/// large sets matters: each MOVE costs the server work in proportion to the
/// mailbox's size. Holding them a little longer is safe: a message committed
/// but not yet acknowledged is recognised as a duplicate if it comes back.
#[derive(Default)]
struct Acks {
    done: Vec<u32>,
    quarantined: Vec<u32>,
}

impl Acks {
    fn len(&self) -> usize {
        self.done.len() + self.quarantined.len()
    }

    async fn flush(&mut self, inbox: &mut Inbox) -> Result<u64, ImapError> {
        inbox
            .acknowledge(&self.done, Disposition::Processed)
            .await?;
        inbox
            .acknowledge(&self.quarantined, Disposition::Quarantined)
            .await?;
        let n = self.len() as u64;
        self.done.clear();
        self.quarantined.clear();
        Ok(n)
    }
}

/// Time from the server's acceptance (INTERNALDATE, whole seconds) to the
/// commit, for each lead this batch created.
fn observe_time_to_lead(
    pipeline: &Pipeline,
    arrivals: &[Option<String>],
    reports: &[IngestReport],
) {
    let now = time::OffsetDateTime::now_utc();
    for (arrived, report) in arrivals.iter().zip(reports) {
        if report.outcome != Outcome::Created {
            continue;
        }
        let Some(at) = arrived.as_deref().and_then(|a| {
            time::OffsetDateTime::parse(a, &time::format_description::well_known::Rfc3339).ok()
        }) else {
            continue;
        };
        pipeline.metrics().time_to_lead((now - at).as_seconds_f64());
    }
}

/// Status is best effort: failing to record it never stops the inbox.
async fn record(pipeline: &Pipeline, id: &str, event: InboxEvent<'_>) {
    if let Err(e) = pipeline.store().record_inbox(id, &event).await {
        tracing::warn!(message = "Cannot record inbox status.", brokerage = %id, error = %e);
    }
}
