//! Store: the durable record of messages, leads, history and routing state.
//!
//! SQLite through sqlx, migrations embedded in the binary. Multi-statement
//! work runs in a [`StoreTx`] opened with `BEGIN IMMEDIATE`, so that the
//! dedupe check, the round-robin cursor read and the inserts it decides are
//! serialized against every other writer. Commits are durable
//! (`synchronous = FULL`) before anything is acknowledged upstream.
//! Row mapping lives here and nowhere else.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor, Row};

use crate::config::BrokerageConfig;
use crate::route::Halt;

mod leases;
mod offers;
pub use leases::Lease;
pub use offers::{AwayRow, OfferRow, OfferedLead};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The database behind a [`Store`], chosen by the URL's scheme. The SQL is
/// written once, in the dialect both understand (`$N` parameters,
/// `ON CONFLICT`, `RETURNING`); what differs between them lives in this type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Option<Backend> {
        let scheme = url.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    fn migrator(self) -> &'static sqlx::migrate::Migrator {
        match self {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }

    /// Opens a write transaction that excludes every other writer until it
    /// ends, on every instance sharing the database: SQLite takes its write
    /// lock at once (no lock upgrade, so no deadlock between writers);
    /// PostgreSQL takes one transaction-scoped advisory lock. Writers are
    /// therefore serialized exactly alike on both, which is what keeps the
    /// dedupe check, the round-robin cursor and an offer's accept race
    /// correct across instances without per-query locking.
    fn begin_sql(self) -> &'static [&'static str] {
        match self {
            Backend::Sqlite => &["BEGIN IMMEDIATE"],
            Backend::Postgres => &["BEGIN", "SELECT pg_advisory_xact_lock(7242186813)"],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid database url: {0}")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot encode stored data: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("unexpected stored data: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A message about to be recorded.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub brokerage_key: &'a str,
    pub dedupe_key: &'a str,
    pub sha256: &'a str,
    pub message_id: Option<&'a str>,
    pub origin: &'a str,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub raw: &'a [u8],
    /// The existing lead this message attached to (repeat inquiry).
    pub lead_id: Option<i64>,
}

/// What is already stored for a message key.
#[derive(Debug, Clone)]
pub struct ExistingMessage {
    pub id: i64,
    pub outcome: String,
    pub lead_id: Option<i64>,
}

/// A lead about to be inserted: the parsed fields plus the routing decision.
#[derive(Debug, Clone)]
pub struct NewLead<'a> {
    pub brokerage_id: &'a str,
    pub message_row: i64,
    pub lead: &'a crate::lead::ParsedMessage,
    pub decision: &'a crate::route::RoutingDecision,
}

/// A stored lead as `leads list` and `leads show` present it.
#[derive(Debug, Clone, Serialize)]
pub struct LeadRecord {
    pub id: i64,
    pub brokerage: String,
    pub kind: String,
    pub owner: String,
    pub user: String,
    pub rule: Option<String>,
    pub reason: String,
    pub source: String,
    pub lead_type: Option<String>,
    pub contact: crate::lead::Contact,
    pub property: crate::lead::Property,
    pub message: Option<String>,
    pub forwarded_by: Option<String>,
    pub agent_hint: Option<crate::lead::AgentHint>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Left in the pond for manual distribution.
    pub unassigned: bool,
    /// "assigned", or "offered" while agents are deciding (then `user` is empty).
    pub status: String,
    /// Recorded when an offered lead is settled (0 for direct leads).
    pub referral_fee_percent: Option<i64>,
    pub created_at: String,
}

/// One entry of a lead's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LeadEvent {
    pub at: String,
    pub kind: String,
    pub actor: String,
    #[sqlx(rename = "from_agent")]
    pub from: Option<String>,
    #[sqlx(rename = "to_agent")]
    pub to: Option<String>,
    pub note: Option<String>,
}

/// Current UTC time as RFC 3339, the one timestamp format stored.
pub fn now() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

/// UTC time `d` from now, in the stored format.
pub fn time_after(d: std::time::Duration) -> String {
    format_time(time::OffsetDateTime::now_utc() + d)
}

/// UTC time `d` ago, in the stored format.
pub fn time_before(d: std::time::Duration) -> String {
    format_time(time::OffsetDateTime::now_utc() - d)
}

fn format_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Opens (creating when missing) the database at `url` and applies migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url).ok_or_else(|| {
            StoreError::Url("expected sqlite://PATH or postgres://...".to_string())
        })?;
        let store = match backend {
            Backend::Sqlite => {
                let file = SqliteConnectOptions::from_str(url)
                    .map_err(|e| StoreError::Url(e.to_string()))?
                    .get_filename()
                    .to_path_buf();
                if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    create_private_dir(dir)?;
                }
                let url = match url.contains("mode=") {
                    true => url.to_string(),
                    false if url.contains('?') => format!("{url}&mode=rwc"),
                    false => format!("{url}?mode=rwc"),
                };
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    // Commits are durable before anything is acknowledged
                    // upstream; a writer waits for another rather than fail.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?;
                let store = Store { pool, backend };
                store.migrate().await?;
                restrict_to_owner(&file);
                store
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(30))
                    // A commit precedes an acknowledgement upstream, so it
                    // must be durable: a server (or role) configured with
                    // synchronous_commit = off would lose acknowledged leads
                    // in a crash. Stronger settings are kept as they are.
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            let level: String =
                                sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
                                    .fetch_one(&mut *conn)
                                    .await?;
                            if level == "off" {
                                conn.execute("SET synchronous_commit = on").await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?;
                let store = Store { pool, backend };
                store.migrate().await?;
                store
            }
        };
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        self.backend.migrator().run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Mirrors the configured brokerages and agents into the database.
    /// Agents no longer configured are kept (their leads refer to them) but
    /// marked inactive.
    pub async fn sync_directory(&self, brokerages: &[BrokerageConfig]) -> Result<()> {
        let mut tx = self.begin().await?;
        let at = now();
        for b in brokerages {
            sqlx::query(
                "INSERT INTO brokerages (id, name, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
            )
            .bind(&b.id)
            .bind(&b.name)
            .bind(&at)
            .execute(&mut *tx.tx)
            .await?;
            sqlx::query("UPDATE agents SET active = 0 WHERE brokerage_id = $1")
                .bind(&b.id)
                .execute(&mut *tx.tx)
                .await?;
            for a in &b.agents {
                sqlx::query(
                    "INSERT INTO agents (brokerage_id, id, name, role, emails, active)
                     VALUES ($1, $2, $3, $4, $5, 1)
                     ON CONFLICT (brokerage_id, id) DO UPDATE SET
                       name = excluded.name, role = excluded.role,
                       emails = excluded.emails, active = 1",
                )
                .bind(&b.id)
                .bind(&a.id)
                .bind(&a.name)
                .bind(a.role.as_str())
                .bind(serde_json::to_string(&a.emails)?)
                .execute(&mut *tx.tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts a write transaction that excludes every other writer (see
    /// [`Backend::begin_sql`]).
    pub async fn begin(&self) -> Result<StoreTx> {
        let mut conn = self.pool.acquire().await?;
        for sql in self.backend.begin_sql() {
            sqlx::query(sql).execute(&mut *conn).await?;
        }
        Ok(StoreTx {
            tx: conn,
            committed: false,
            routing_state: HashMap::new(),
        })
    }

    pub async fn list_leads(&self, brokerage: Option<&str>) -> Result<Vec<LeadRecord>> {
        let rows = sqlx::query(&format!(
            "{LEAD_SELECT} WHERE ($1 IS NULL OR l.brokerage_id = $1) ORDER BY l.id"
        ))
        .bind(brokerage)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead_from_row).collect()
    }

    pub async fn lead(&self, id: i64) -> Result<Option<LeadRecord>> {
        let row = sqlx::query(&format!("{LEAD_SELECT} WHERE l.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(lead_from_row).transpose()
    }

    /// The routing decision stored with a lead, as recorded.
    pub async fn lead_trace(&self, id: i64) -> Result<Option<serde_json::Value>> {
        let trace: Option<String> = sqlx::query_scalar("SELECT trace FROM leads WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        trace
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(Into::into)
    }

    pub async fn lead_history(&self, id: i64) -> Result<Vec<LeadEvent>> {
        Ok(sqlx::query_as(
            "SELECT at, kind, actor, from_agent, to_agent, note FROM lead_events
             WHERE lead_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts of stored messages by outcome (for tests and status).
    pub async fn message_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT outcome, COUNT(*) AS n FROM messages GROUP BY outcome ORDER BY outcome",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const LEAD_SELECT: &str =
    "SELECT l.*, m.message_id AS mid FROM leads l JOIN messages m ON m.id = l.message_row";

fn lead_from_row(r: &sqlx::any::AnyRow) -> Result<LeadRecord> {
    let hint_name: Option<String> = r.try_get("agent_hint_name")?;
    let hint_email: Option<String> = r.try_get("agent_hint_email")?;
    Ok(LeadRecord {
        id: r.try_get("id")?,
        brokerage: r.try_get("brokerage_id")?,
        kind: r.try_get("kind")?,
        owner: r.try_get("owner_id")?,
        user: match r.try_get::<String, _>("status")?.as_str() {
            "offered" => String::new(),
            _ => r.try_get("user_id")?,
        },
        status: r.try_get("status")?,
        referral_fee_percent: r.try_get("referral_fee_percent")?,
        rule: r.try_get("rule")?,
        reason: r.try_get("reason")?,
        source: r.try_get("source")?,
        lead_type: r.try_get("lead_type")?,
        contact: crate::lead::Contact {
            name: r.try_get("contact_name")?,
            email: r.try_get("contact_email")?,
            phone: r.try_get("contact_phone")?,
        },
        property: crate::lead::Property {
            address: r.try_get("property_address")?,
            mls_number: r.try_get("mls_number")?,
            price: r.try_get("price")?,
            url: r.try_get("property_url")?,
        },
        message: r.try_get("message")?,
        forwarded_by: r.try_get("forwarded_by")?,
        agent_hint: (hint_name.is_some() || hint_email.is_some()).then_some(
            crate::lead::AgentHint {
                name: hint_name,
                email: hint_email,
            },
        ),
        subject: r.try_get("subject")?,
        message_id: r.try_get("mid")?,
        unassigned: r.try_get::<i64, _>("unassigned")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

/// A write transaction. Dropping it without [`StoreTx::commit`] rolls back.
///
/// Managed by hand, not with `sqlx::Transaction`: when SQLite rolls a
/// transaction back by itself (a full disk, an I/O error), sqlx's ROLLBACK
/// then fails and its transaction depth never returns to zero, so every
/// later BEGIN on that pooled connection fails and the daemon never
/// recovers. A transaction that does not commit instead closes its
/// connection (closing rolls back), and the pool opens a fresh one.
pub struct StoreTx {
    tx: sqlx::pool::PoolConnection<sqlx::Any>,
    committed: bool,
    /// The routing state this transaction has read, by brokerage. A batch of
    /// messages is decided in one transaction, and reading the state once per
    /// transaction instead of once per message saves three statements a lead.
    /// Cursors are written through, and the write lock keeps other routing
    /// transactions out. Halts and aways are never written inside such a
    /// transaction; one set by an admin meanwhile applies from the next
    /// transaction on, as if set a moment later: a batch is decided as of
    /// one instant, its start.
    routing_state: HashMap<String, RoutingState>,
}

#[derive(Default)]
struct RoutingState {
    cursors: Option<HashMap<String, i64>>,
    halts: Option<Vec<Halt>>,
    aways: Option<Vec<crate::route::Away>>,
}

impl Drop for StoreTx {
    fn drop(&mut self) {
        if !self.committed {
            self.tx.close_on_drop();
        }
    }
}

impl StoreTx {
    /// What is stored already under this message key, if anything.
    pub async fn existing_message(
        &mut self,
        brokerage_key: &str,
        dedupe_key: &str,
    ) -> Result<Option<ExistingMessage>> {
        let row = sqlx::query(
            "SELECT m.id, m.outcome, COALESCE(l.id, m.lead_id) AS lead_id FROM messages m
             LEFT JOIN leads l ON l.message_row = m.id
             WHERE m.brokerage_key = $1 AND m.dedupe_key = $2",
        )
        .bind(brokerage_key)
        .bind(dedupe_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.map(|r| {
            Ok(ExistingMessage {
                id: r.try_get("id")?,
                outcome: r.try_get("outcome")?,
                lead_id: r.try_get("lead_id")?,
            })
        })
        .transpose()
    }

    /// Records a message and returns its row id.
    pub async fn insert_message(&mut self, m: &NewMessage<'_>) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO messages (brokerage_key, dedupe_key, sha256, message_id, origin,
                                   received_at, outcome, reason, raw, lead_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(m.brokerage_key)
        .bind(m.dedupe_key)
        .bind(m.sha256)
        .bind(m.message_id)
        .bind(m.origin)
        .bind(now())
        .bind(m.outcome)
        .bind(m.reason)
        .bind(m.raw)
        .bind(m.lead_id)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(id)
    }

    /// Files an earlier-quarantined message again after a replay.
    pub async fn refile_message(
        &mut self,
        id: i64,
        brokerage_key: &str,
        outcome: &str,
        reason: Option<&str>,
        lead_id: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE messages SET brokerage_key = $2, outcome = $3, reason = $4, lead_id = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(brokerage_key)
        .bind(outcome)
        .bind(reason)
        .bind(lead_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Queues a notification in this transaction (with the lead it is about).
    pub async fn queue_notification(&mut self, n: &NewNotification) -> Result<bool> {
        insert_notification(&mut self.tx, n).await
    }

    /// A lead's current owner and assigned user.
    pub async fn lead_agents(&mut self, lead_id: i64) -> Result<(String, String)> {
        let r = sqlx::query("SELECT owner_id, user_id FROM leads WHERE id = $1")
            .bind(lead_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok((r.try_get("owner_id")?, r.try_get("user_id")?))
    }

    /// The stored round-robin positions of a brokerage's pools.
    pub async fn cursors(&mut self, brokerage_id: &str) -> Result<HashMap<String, i64>> {
        if let Some(known) = self.state(brokerage_id).cursors.clone() {
            return Ok(known);
        }
        let read = cursors(&mut self.tx, brokerage_id).await?;
        self.state(brokerage_id).cursors = Some(read.clone());
        Ok(read)
    }

    /// Halts in force at `now` (RFC 3339) in a brokerage; as of the first
    /// look in this transaction (see `routing_state`).
    pub async fn active_halts(&mut self, brokerage_id: &str, now: &str) -> Result<Vec<Halt>> {
        if let Some(known) = self.state(brokerage_id).halts.clone() {
            return Ok(known);
        }
        let read = active_halts(&mut self.tx, brokerage_id, now).await?;
        self.state(brokerage_id).halts = Some(read.clone());
        Ok(read)
    }

    fn state(&mut self, brokerage_id: &str) -> &mut RoutingState {
        self.routing_state
            .entry(brokerage_id.to_string())
            .or_default()
    }

    /// The agent of an imported listing with this MLS number or address key.
    pub async fn listing_agent(
        &mut self,
        brokerage_id: &str,
        mls_number: Option<&str>,
        address_key: Option<&str>,
    ) -> Result<Option<String>> {
        let agent = sqlx::query_scalar(
            "SELECT agent_id FROM listings WHERE brokerage_id = $1
               AND (($2 IS NOT NULL AND mls_number = $2) OR ($3 IS NOT NULL AND address_key = $3))
             ORDER BY (mls_number = $2) DESC, id DESC LIMIT 1",
        )
        .bind(brokerage_id)
        .bind(mls_number.map(str::to_ascii_uppercase))
        .bind(address_key)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(agent)
    }

    /// The lead an inquiry repeats: same brokerage, created since `since`,
    /// and the same email, or the same phone and name.
    pub async fn find_repeat(
        &mut self,
        brokerage_id: &str,
        contact: &crate::lead::Contact,
        since: &str,
    ) -> Result<Option<i64>> {
        let id = sqlx::query_scalar(
            "SELECT id FROM leads WHERE brokerage_id = $1 AND created_at >= $2
               AND (($3 IS NOT NULL AND contact_email = $3)
                 OR ($4 IS NOT NULL AND $5 IS NOT NULL AND contact_phone = $4
                     AND lower(contact_name) = lower($5)))
             ORDER BY id DESC LIMIT 1",
        )
        .bind(brokerage_id)
        .bind(since)
        .bind(contact.email.as_deref())
        .bind(contact.phone.as_deref())
        .bind(contact.name.as_deref())
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(id)
    }

    pub async fn set_cursor(
        &mut self,
        brokerage_id: &str,
        pool: &str,
        position: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO round_robin_cursors (brokerage_id, pool, position) VALUES ($1, $2, $3)
             ON CONFLICT (brokerage_id, pool) DO UPDATE SET position = excluded.position",
        )
        .bind(brokerage_id)
        .bind(pool)
        .bind(position)
        .execute(&mut *self.tx)
        .await?;
        if let Some(known) = self.state(brokerage_id).cursors.as_mut() {
            known.insert(pool.to_string(), position);
        }
        Ok(())
    }

    /// Inserts a lead with its routing trace and its first history events.
    pub async fn insert_lead(&mut self, new: &NewLead<'_>) -> Result<i64> {
        let l = new.lead;
        let d = new.decision;
        let at = now();
        let hint = l.agent_hint.as_ref();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO leads (brokerage_id, message_row, kind, owner_id, user_id, rule, reason,
                source, lead_type, contact_name, contact_email, contact_phone, property_address,
                mls_number, price, property_url, message, forwarded_by, agent_hint_name,
                agent_hint_email, subject, trace, created_at, unassigned, status, offer_plan,
                referral_fee_percent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                     $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)
             RETURNING id",
        )
        .bind(new.brokerage_id)
        .bind(new.message_row)
        .bind(d.kind.as_str())
        .bind(&d.owner)
        .bind(&d.user)
        .bind(&d.rule)
        .bind(&d.reason)
        .bind(&l.source)
        .bind(l.lead_type.map(|t| t.as_str()))
        .bind(&l.contact.name)
        .bind(&l.contact.email)
        .bind(&l.contact.phone)
        .bind(&l.property.address)
        .bind(&l.property.mls_number)
        .bind(l.property.price)
        .bind(&l.property.url)
        .bind(&l.message)
        .bind(&l.forwarded_by)
        .bind(hint.and_then(|h| h.name.as_deref()))
        .bind(hint.and_then(|h| h.email.as_deref()))
        .bind(&l.subject)
        .bind(serde_json::to_string(d)?)
        .bind(&at)
        .bind(i64::from(d.unassigned))
        .bind(if d.offer.is_some() {
            "offered"
        } else {
            "assigned"
        })
        .bind(d.offer.as_ref().map(serde_json::to_string).transpose()?)
        // Direct leads carry no referral fee; offered ones get theirs when accepted.
        .bind((d.kind == crate::route::RouteKind::Direct && d.offer.is_none()).then_some(0i64))
        .fetch_one(&mut *self.tx)
        .await?;
        self.add_event(
            id,
            &at,
            "created",
            "leadmail",
            None,
            None,
            Some(&format!("from {}", l.source)),
        )
        .await?;
        let (kind, to) = match d.offer {
            Some(_) => ("offered", None),
            None => ("routed", Some(d.user.as_str())),
        };
        self.add_event(id, &at, kind, "leadmail", None, to, Some(&d.reason))
            .await?;
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn add_event(
        &mut self,
        lead_id: i64,
        at: &str,
        kind: &str,
        actor: &str,
        from: Option<&str>,
        to: Option<&str>,
        note: Option<&str>,
    ) -> Result<()> {
        add_event(&mut self.tx, lead_id, at, kind, actor, from, to, note).await
    }

    pub async fn commit(mut self) -> Result<()> {
        sqlx::query("COMMIT").execute(&mut *self.tx).await?;
        self.committed = true;
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn add_event(
    conn: &mut sqlx::AnyConnection,
    lead_id: i64,
    at: &str,
    kind: &str,
    actor: &str,
    from: Option<&str>,
    to: Option<&str>,
    note: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO lead_events (lead_id, at, kind, actor, from_agent, to_agent, note)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(lead_id)
    .bind(at)
    .bind(kind)
    .bind(actor)
    .bind(from)
    .bind(to)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(())
}

async fn cursors(
    conn: &mut sqlx::AnyConnection,
    brokerage_id: &str,
) -> Result<HashMap<String, i64>> {
    let rows =
        sqlx::query("SELECT pool, position FROM round_robin_cursors WHERE brokerage_id = $1")
            .bind(brokerage_id)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("pool")?, r.try_get("position")?)))
        .collect()
}

async fn active_halts(
    conn: &mut sqlx::AnyConnection,
    brokerage_id: &str,
    now: &str,
) -> Result<Vec<Halt>> {
    let rows = sqlx::query(
        "SELECT agent_id, reason, until, by_agent FROM halts
         WHERE brokerage_id = $1 AND ended_at IS NULL AND (until IS NULL OR until > $2)
         ORDER BY id",
    )
    .bind(brokerage_id)
    .bind(now)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Halt {
                agent: r.try_get("agent_id")?,
                reason: r.try_get("reason")?,
                until: r.try_get("until")?,
                by: r.try_get("by_agent")?,
            })
        })
        .collect()
}

/// Which of a lead's agents a reassignment changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignee {
    Owner,
    User,
}

/// One imported listing.
#[derive(Debug, Clone)]
pub struct ListingRow {
    pub mls_number: Option<String>,
    pub address: Option<String>,
    pub address_key: Option<String>,
    pub agent: String,
}

impl Store {
    /// Halts in force now in a brokerage.
    pub async fn halts(&self, brokerage_id: &str) -> Result<Vec<Halt>> {
        let mut conn = self.pool.acquire().await?;
        active_halts(&mut conn, brokerage_id, &now()).await
    }

    /// Halts an agent, replacing a halt already in force.
    pub async fn halt(
        &self,
        brokerage_id: &str,
        agent_id: &str,
        reason: &str,
        until: Option<&str>,
        by: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let at = now();
        sqlx::query(
            "UPDATE halts SET ended_at = $3, ended_by = $4
             WHERE brokerage_id = $1 AND agent_id = $2 AND ended_at IS NULL",
        )
        .bind(brokerage_id)
        .bind(agent_id)
        .bind(&at)
        .bind(by)
        .execute(&mut *tx.tx)
        .await?;
        sqlx::query(
            "INSERT INTO halts (brokerage_id, agent_id, reason, until, by_agent, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(brokerage_id)
        .bind(agent_id)
        .bind(reason)
        .bind(until)
        .bind(by)
        .bind(&at)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends an agent's halt; `false` when none was in force.
    pub async fn resume(&self, brokerage_id: &str, agent_id: &str, by: &str) -> Result<bool> {
        let at = now();
        let done = sqlx::query(
            "UPDATE halts SET ended_at = $3, ended_by = $4
             WHERE brokerage_id = $1 AND agent_id = $2 AND ended_at IS NULL
               AND (until IS NULL OR until > $3)",
        )
        .bind(brokerage_id)
        .bind(agent_id)
        .bind(&at)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Changes a lead's owner or user and records the change with its note,
    /// in one transaction. Returns the previous agent.
    pub async fn reassign(
        &self,
        lead_id: i64,
        which: Assignee,
        to: &str,
        note: &str,
        by: &str,
    ) -> Result<String> {
        let mut tx = self.begin().await?;
        let (column, kind) = match which {
            Assignee::Owner => ("owner_id", "owner_changed"),
            Assignee::User => ("user_id", "user_changed"),
        };
        let from: String = sqlx::query_scalar(&format!("SELECT {column} FROM leads WHERE id = $1"))
            .bind(lead_id)
            .fetch_one(&mut *tx.tx)
            .await?;
        sqlx::query(&format!(
            "UPDATE leads SET {column} = $2, unassigned = 0 WHERE id = $1"
        ))
        .bind(lead_id)
        .bind(to)
        .execute(&mut *tx.tx)
        .await?;
        add_event(
            &mut tx.tx,
            lead_id,
            &now(),
            kind,
            by,
            Some(&from),
            Some(to),
            Some(note),
        )
        .await?;
        tx.commit().await?;
        Ok(from)
    }

    /// Replaces a brokerage's imported listings with `rows`.
    pub async fn import_listings(&self, brokerage_id: &str, rows: &[ListingRow]) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM listings WHERE brokerage_id = $1")
            .bind(brokerage_id)
            .execute(&mut *tx.tx)
            .await?;
        let at = now();
        for r in rows {
            sqlx::query(
                "INSERT INTO listings (brokerage_id, mls_number, address, address_key, agent_id, imported_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(brokerage_id)
            .bind(r.mls_number.as_deref().map(str::to_ascii_uppercase))
            .bind(r.address.as_deref())
            .bind(r.address_key.as_deref())
            .bind(&r.agent)
            .bind(&at)
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// What `leadmail status` shows for one inbox.
#[derive(Debug, Clone, Serialize)]
pub struct InboxStatus {
    pub brokerage: String,
    pub connected: bool,
    pub last_success: Option<String>,
    pub processed: i64,
    pub oldest_waiting: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub quarantined: i64,
    pub updated_at: Option<String>,
    /// The `leadmail run` instance working this inbox now, if any.
    pub lease: Option<Lease>,
}

/// A change to an inbox's status, as the daemon observes it.
#[derive(Debug, Clone, Default)]
pub struct InboxEvent<'a> {
    pub connected: Option<bool>,
    /// The inbox was read to the end just now.
    pub success: bool,
    pub processed: i64,
    /// `Some(None)` clears it.
    pub oldest_waiting: Option<Option<&'a str>>,
    pub error: Option<&'a str>,
}

/// A quarantined message, for `quarantine list`.
#[derive(Debug, Clone, Serialize)]
pub struct QuarantinedMessage {
    pub id: i64,
    pub brokerage: Option<String>,
    pub origin: String,
    pub received_at: String,
    pub reason: Option<String>,
    pub message_id: Option<String>,
}

/// A stored message's bytes and where it was filed, for replay.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredMessage {
    pub id: i64,
    pub brokerage_key: String,
    pub origin: String,
    pub outcome: String,
    pub raw: Vec<u8>,
}

impl Store {
    /// Records what the daemon saw of an inbox.
    pub async fn record_inbox(&self, brokerage_id: &str, e: &InboxEvent<'_>) -> Result<()> {
        let at = now();
        sqlx::query(
            "INSERT INTO inbox_status (brokerage_id, updated_at) VALUES ($1, $2)
             ON CONFLICT (brokerage_id) DO NOTHING",
        )
        .bind(brokerage_id)
        .bind(&at)
        .execute(&self.pool)
        .await?;
        sqlx::query(
            "UPDATE inbox_status SET
               connected = COALESCE($2, connected),
               last_success = CASE WHEN $3 THEN $7 ELSE last_success END,
               processed = processed + $4,
               oldest_waiting = CASE WHEN $5 THEN $6 ELSE oldest_waiting END,
               last_error = COALESCE($8, last_error),
               last_error_at = CASE WHEN $8 IS NOT NULL THEN $7 ELSE last_error_at END,
               updated_at = $7
             WHERE brokerage_id = $1",
        )
        .bind(brokerage_id)
        .bind(e.connected.map(i64::from))
        .bind(e.success)
        .bind(e.processed)
        .bind(e.oldest_waiting.is_some())
        .bind(e.oldest_waiting.flatten())
        .bind(&at)
        .bind(e.error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Status of every brokerage's inbox (brokerages never run show as not connected).
    pub async fn inbox_statuses(&self, brokerages: &[String]) -> Result<Vec<InboxStatus>> {
        let mut out = Vec::new();
        for b in brokerages {
            let row = sqlx::query("SELECT * FROM inbox_status WHERE brokerage_id = $1")
                .bind(b)
                .fetch_optional(&self.pool)
                .await?;
            let quarantined: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM messages WHERE brokerage_key = $1 AND outcome = 'quarantined'",
            )
            .bind(b)
            .fetch_one(&self.pool)
            .await?;
            out.push(match row {
                Some(r) => InboxStatus {
                    brokerage: b.clone(),
                    connected: r.try_get::<i64, _>("connected")? != 0,
                    last_success: r.try_get("last_success")?,
                    processed: r.try_get("processed")?,
                    oldest_waiting: r.try_get("oldest_waiting")?,
                    last_error: r.try_get("last_error")?,
                    last_error_at: r.try_get("last_error_at")?,
                    quarantined,
                    updated_at: r.try_get("updated_at")?,
                    lease: None,
                },
                None => InboxStatus {
                    brokerage: b.clone(),
                    connected: false,
                    last_success: None,
                    processed: 0,
                    oldest_waiting: None,
                    last_error: None,
                    last_error_at: None,
                    quarantined,
                    updated_at: None,
                    lease: None,
                },
            });
            if let Some(last) = out.last_mut() {
                last.lease = self.lease(b).await?;
            }
        }
        Ok(out)
    }

    pub async fn quarantined(&self) -> Result<Vec<QuarantinedMessage>> {
        let rows = sqlx::query(
            "SELECT id, brokerage_key, origin, received_at, reason, message_id FROM messages
             WHERE outcome = 'quarantined' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let b: String = r.try_get("brokerage_key")?;
                Ok(QuarantinedMessage {
                    id: r.try_get("id")?,
                    brokerage: (!b.is_empty()).then_some(b),
                    origin: r.try_get("origin")?,
                    received_at: r.try_get("received_at")?,
                    reason: r.try_get("reason")?,
                    message_id: r.try_get("message_id")?,
                })
            })
            .collect()
    }

    pub async fn stored_message(&self, id: i64) -> Result<Option<StoredMessage>> {
        Ok(sqlx::query_as(
            "SELECT id, brokerage_key, origin, outcome, raw FROM messages WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// A notification to queue.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub brokerage_id: String,
    pub lead_id: Option<i64>,
    pub kind: &'static str,
    pub agent_id: String,
    pub recipient: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub message_id: String,
}

/// A queued notification, as the sender reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Notification {
    pub id: i64,
    pub recipient: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub message_id: String,
    pub lead_id: Option<i64>,
    pub kind: String,
    pub attempts: i64,
}

/// The outbox at a glance, for `leadmail status`.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxStatus {
    pub pending: i64,
    pub failed: i64,
    pub sent: i64,
    pub last_error: Option<String>,
}

async fn insert_notification(conn: &mut sqlx::AnyConnection, n: &NewNotification) -> Result<bool> {
    let at = now();
    let done = sqlx::query(
        "INSERT INTO notifications (brokerage_id, lead_id, kind, agent_id, recipient, reply_to,
            subject, body_text, body_html, message_id, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
         ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&n.brokerage_id)
    .bind(n.lead_id)
    .bind(n.kind)
    .bind(&n.agent_id)
    .bind(&n.recipient)
    .bind(&n.reply_to)
    .bind(&n.subject)
    .bind(&n.body_text)
    .bind(&n.body_html)
    .bind(&n.message_id)
    .bind(&at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

impl Store {
    /// Queues a notification outside any other transaction (test mails, digests).
    pub async fn queue_notification(&self, n: &NewNotification) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        insert_notification(&mut conn, n).await
    }

    /// Pending notifications whose time has come, oldest first.
    pub async fn due_notifications(&self, limit: i64) -> Result<Vec<Notification>> {
        let rows = sqlx::query_as(
            "SELECT id, recipient, reply_to, subject, body_text, body_html, message_id, lead_id,
                    kind, attempts
             FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY id LIMIT $2",
        )
        .bind(now())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Takes a due notification for `instance` by moving its next attempt
    /// `claim` ahead; false when another sender took it first. One
    /// conditional update of one row, so exactly one of several instances
    /// wins on either backend.
    pub async fn claim_notification(
        &self,
        id: i64,
        instance: &str,
        claim: Duration,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $2, claimed_by = $3
             WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $4",
        )
        .bind(id)
        .bind(time_after(claim))
        .bind(instance)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The instances holding claims on pending notifications now.
    pub async fn notification_claimers(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT claimed_by FROM notifications
             WHERE status = 'pending' AND next_attempt_at > $1 AND claimed_by IS NOT NULL",
        )
        .bind(now())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes the notifications claimed by a gone instance due again.
    pub async fn release_claims(&self, instance: &str) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE notifications SET next_attempt_at = $2, claimed_by = NULL
             WHERE status = 'pending' AND claimed_by = $1",
        )
        .bind(instance)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn mark_sent(&self, id: i64) -> Result<()> {
        sqlx::query("UPDATE notifications SET status = 'sent', sent_at = $2, attempts = attempts + 1 WHERE id = $1")
            .bind(id)
            .bind(now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at`, or given up when `None`.
    pub async fn mark_attempt_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE notifications SET attempts = attempts + 1, last_error = $2, claimed_by = NULL,
               status = CASE WHEN $3 IS NULL THEN 'failed' ELSE 'pending' END,
               next_attempt_at = COALESCE($3, next_attempt_at)
             WHERE id = $1",
        )
        .bind(id)
        .bind(error)
        .bind(retry_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The earliest time a pending notification is due, if any is pending.
    pub async fn next_notification_due(&self) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn outbox_status(&self) -> Result<OutboxStatus> {
        let count = |status: &'static str| {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM notifications WHERE status = $1")
                .bind(status)
                .fetch_one(&self.pool)
        };
        Ok(OutboxStatus {
            pending: count("pending").await?,
            failed: count("failed").await?,
            sent: count("sent").await?,
            last_error: sqlx::query_scalar(
                "SELECT last_error FROM notifications WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?,
        })
    }

    /// Quarantined messages of a brokerage after `after_row`: (row, reason).
    pub async fn quarantined_since(
        &self,
        brokerage_id: &str,
        after_row: i64,
    ) -> Result<Vec<(i64, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT id, reason FROM messages WHERE brokerage_key = $1 AND outcome = 'quarantined' AND id > $2 ORDER BY id",
        )
        .bind(brokerage_id)
        .bind(after_row)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("reason")?)))
            .collect()
    }

    /// Where a brokerage's digest got to: (last message row, last sent at).
    pub async fn digest_state(&self, brokerage_id: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query(
            "SELECT last_message_row, last_sent_at FROM quarantine_digests WHERE brokerage_id = $1",
        )
        .bind(brokerage_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("last_message_row")?, r.try_get("last_sent_at")?)))
            .transpose()
    }

    /// Queues digest notifications and advances the digest state, together.
    pub async fn queue_digest(
        &self,
        brokerage_id: &str,
        up_to_row: i64,
        notifications: &[NewNotification],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        for n in notifications {
            insert_notification(&mut tx.tx, n).await?;
        }
        sqlx::query(
            "INSERT INTO quarantine_digests (brokerage_id, last_message_row, last_sent_at) VALUES ($1, $2, $3)
             ON CONFLICT (brokerage_id) DO UPDATE SET last_message_row = excluded.last_message_row,
               last_sent_at = excluded.last_sent_at",
        )
        .bind(brokerage_id)
        .bind(up_to_row)
        .bind(now())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Makes the database and its WAL files readable by their owner only (they
/// hold people's contact details), whatever the umask was.
fn restrict_to_owner(db: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![db.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
        for f in files.iter().filter(|f| f.exists()) {
            if let Err(e) = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)) {
                tracing::warn!(message = "Cannot restrict database permissions.", path = %f.display(), error = %e);
            }
        }
    }
}

/// Creates a directory (and parents) readable by its owner only: it holds
/// people's contact details.
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::CreateDir {
        path: dir.display().to_string(),
        source,
    })
}
