//! Store: the durable record of messages, leads, history and routing state.
//!
//! SQLite through sqlx, migrations embedded in the binary. Multi-statement
//! work runs in a [`StoreTx`] opened with `BEGIN IMMEDIATE`, so that the
//! dedupe check, the round-robin cursor read and the inserts it decides are
//! serialized against every other writer. Commits are durable
//! (`synchronous = FULL`) before anything is acknowledged upstream.
//! Row mapping lives here and nowhere else.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::config::BrokerageConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

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
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
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
    pub created_at: String,
}

/// One entry of a lead's history.
#[derive(Debug, Clone, Serialize)]
pub struct LeadEvent {
    pub at: String,
    pub kind: String,
    pub actor: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub note: Option<String>,
}

/// Current UTC time as RFC 3339, the one timestamp format stored.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Store {
    /// Opens (creating when missing) the database at `url` and applies migrations.
    pub async fn open(url: &str) -> Result<Store> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Url(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let file = options.get_filename();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Store { pool })
    }

    /// Mirrors the configured brokerages and agents into the database.
    /// Agents no longer configured are kept (their leads refer to them) but
    /// marked inactive.
    pub async fn sync_directory(&self, brokerages: &[BrokerageConfig]) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let at = now();
        for b in brokerages {
            sqlx::query(
                "INSERT INTO brokerages (id, name, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at",
            )
            .bind(&b.id)
            .bind(&b.name)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE agents SET active = 0 WHERE brokerage_id = ?1")
                .bind(&b.id)
                .execute(&mut *tx)
                .await?;
            for a in &b.agents {
                sqlx::query(
                    "INSERT INTO agents (brokerage_id, id, name, role, emails, active)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT (brokerage_id, id) DO UPDATE SET
                       name = excluded.name, role = excluded.role,
                       emails = excluded.emails, active = 1",
                )
                .bind(&b.id)
                .bind(&a.id)
                .bind(&a.name)
                .bind(a.role.as_str())
                .bind(serde_json::to_string(&a.emails)?)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts a write transaction that holds the database's write lock from
    /// its first statement (no lock upgrade, so no deadlock between writers).
    pub async fn begin(&self) -> Result<StoreTx> {
        Ok(StoreTx {
            tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
        })
    }

    pub async fn list_leads(&self, brokerage: Option<&str>) -> Result<Vec<LeadRecord>> {
        let rows = sqlx::query(&format!(
            "{LEAD_SELECT} WHERE (?1 IS NULL OR l.brokerage_id = ?1) ORDER BY l.id"
        ))
        .bind(brokerage)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(lead_from_row).collect()
    }

    pub async fn lead(&self, id: i64) -> Result<Option<LeadRecord>> {
        let row = sqlx::query(&format!("{LEAD_SELECT} WHERE l.id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(lead_from_row).transpose()
    }

    /// The routing decision stored with a lead, as recorded.
    pub async fn lead_trace(&self, id: i64) -> Result<Option<serde_json::Value>> {
        let trace: Option<String> = sqlx::query_scalar("SELECT trace FROM leads WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        trace
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(Into::into)
    }

    pub async fn lead_history(&self, id: i64) -> Result<Vec<LeadEvent>> {
        let rows = sqlx::query(
            "SELECT at, kind, actor, from_agent, to_agent, note FROM lead_events
             WHERE lead_id = ?1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LeadEvent {
                    at: r.try_get("at")?,
                    kind: r.try_get("kind")?,
                    actor: r.try_get("actor")?,
                    from: r.try_get("from_agent")?,
                    to: r.try_get("to_agent")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
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

fn lead_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<LeadRecord> {
    let hint_name: Option<String> = r.try_get("agent_hint_name")?;
    let hint_email: Option<String> = r.try_get("agent_hint_email")?;
    Ok(LeadRecord {
        id: r.try_get("id")?,
        brokerage: r.try_get("brokerage_id")?,
        kind: r.try_get("kind")?,
        owner: r.try_get("owner_id")?,
        user: r.try_get("user_id")?,
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
        created_at: r.try_get("created_at")?,
    })
}

/// A write transaction. Dropping it without [`StoreTx::commit`] rolls back.
pub struct StoreTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
}

impl StoreTx {
    /// What is stored already under this message key, if anything.
    pub async fn existing_message(
        &mut self,
        brokerage_key: &str,
        dedupe_key: &str,
    ) -> Result<Option<ExistingMessage>> {
        let row = sqlx::query(
            "SELECT m.id, m.outcome, l.id AS lead_id FROM messages m
             LEFT JOIN leads l ON l.message_row = m.id
             WHERE m.brokerage_key = ?1 AND m.dedupe_key = ?2",
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
                                   received_at, outcome, reason, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
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
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(id)
    }

    /// The stored round-robin position of a pool (0 when never used).
    pub async fn cursor(&mut self, brokerage_id: &str, pool: &str) -> Result<i64> {
        let pos: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM round_robin_cursors WHERE brokerage_id = ?1 AND pool = ?2",
        )
        .bind(brokerage_id)
        .bind(pool)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(pos.unwrap_or(0))
    }

    pub async fn set_cursor(
        &mut self,
        brokerage_id: &str,
        pool: &str,
        position: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO round_robin_cursors (brokerage_id, pool, position) VALUES (?1, ?2, ?3)
             ON CONFLICT (brokerage_id, pool) DO UPDATE SET position = excluded.position",
        )
        .bind(brokerage_id)
        .bind(pool)
        .bind(position)
        .execute(&mut *self.tx)
        .await?;
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
                agent_hint_email, subject, trace, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18, ?19, ?20, ?21, ?22, ?23)
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
        self.add_event(
            id,
            &at,
            "routed",
            "leadmail",
            None,
            Some(&d.user),
            Some(&d.reason),
        )
        .await?;
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn add_event(
        &mut self,
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(lead_id)
        .bind(at)
        .bind(kind)
        .bind(actor)
        .bind(from)
        .bind(to)
        .bind(note)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
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
