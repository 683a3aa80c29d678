//! Offers and out-of-office in the database. Every change to an offered lead
//! happens in one `BEGIN IMMEDIATE` transaction (the caller's `StoreTx`), so
//! two agents accepting at once are serialized and exactly one finds its
//! offer open. Which changes to make is decided by `crate::offer` (pure).

use serde::Serialize;
use sqlx::Row;

use super::{Result, Store, StoreError, StoreTx, now};
use crate::offer::{Offer, OfferPlan, OfferState};
use crate::route::Away;

/// An offered lead as the state machine needs it.
#[derive(Debug, Clone)]
pub struct OfferedLead {
    pub lead_id: i64,
    pub brokerage_id: String,
    pub message_row: i64,
    /// "offered" until settled.
    pub status: String,
    pub plan: OfferPlan,
    pub offers: Vec<Offer>,
    pub created_at: String,
}

/// One offer as `offers list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OfferRow {
    pub id: i64,
    pub lead_id: i64,
    pub brokerage: String,
    pub agent: String,
    pub state: String,
    pub offered_at: String,
    pub deadline: String,
    pub decided_at: Option<String>,
    pub source: String,
    pub property: Option<String>,
    pub rule: Option<String>,
    pub mode: Option<String>,
}

/// An agent's out-of-office as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AwayRow {
    pub brokerage: String,
    pub agent: String,
    pub delegate: Option<String>,
    pub until: Option<String>,
    pub since: String,
    pub by: String,
}

fn state_of(s: &str) -> Result<OfferState> {
    OfferState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown offer state {s:?}")))
}

const OFFER_ROW_SELECT: &str = "SELECT o.id, o.lead_id, o.brokerage_id, o.agent_id, o.state,
        o.offered_at, o.deadline, o.decided_at, l.source, l.property_address, l.offer_plan
     FROM offers o JOIN leads l ON l.id = o.lead_id";

fn offer_row(r: &sqlx::any::AnyRow) -> Result<OfferRow> {
    let plan: Option<String> = r.try_get("offer_plan")?;
    let plan: Option<OfferPlan> = plan.and_then(|p| serde_json::from_str(&p).ok());
    Ok(OfferRow {
        id: r.try_get("id")?,
        lead_id: r.try_get("lead_id")?,
        brokerage: r.try_get("brokerage_id")?,
        agent: r.try_get("agent_id")?,
        state: r.try_get("state")?,
        offered_at: r.try_get("offered_at")?,
        deadline: r.try_get("deadline")?,
        decided_at: r.try_get("decided_at")?,
        source: r.try_get("source")?,
        property: r.try_get("property_address")?,
        rule: plan.as_ref().map(|p| p.rule.clone()),
        mode: plan.map(|p| p.mode.as_str().to_string()),
    })
}

impl StoreTx {
    /// The offered lead with its plan and offers (any status), if it was ever offered.
    pub async fn offered_lead(&mut self, lead_id: i64) -> Result<Option<OfferedLead>> {
        let Some(row) = sqlx::query(
            "SELECT id, brokerage_id, message_row, status, offer_plan, created_at
             FROM leads WHERE id = $1 AND offer_plan IS NOT NULL",
        )
        .bind(lead_id)
        .fetch_optional(&mut *self.tx)
        .await?
        else {
            return Ok(None);
        };
        let plan: String = row.try_get("offer_plan")?;
        let plan: OfferPlan = serde_json::from_str(&plan)?;
        let offers = sqlx::query(
            "SELECT id, agent_id, state, deadline FROM offers WHERE lead_id = $1 ORDER BY id",
        )
        .bind(lead_id)
        .fetch_all(&mut *self.tx)
        .await?
        .iter()
        .map(|r| {
            Ok(Offer {
                id: r.try_get("id")?,
                agent: r.try_get("agent_id")?,
                state: state_of(&r.try_get::<String, _>("state")?)?,
                deadline: r.try_get("deadline")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(OfferedLead {
            lead_id,
            brokerage_id: row.try_get("brokerage_id")?,
            message_row: row.try_get("message_row")?,
            status: row.try_get("status")?,
            plan,
            offers,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Offers the lead to an agent; returns the offer's id.
    pub async fn open_offer(
        &mut self,
        lead_id: i64,
        brokerage_id: &str,
        agent_id: &str,
        deadline: &str,
    ) -> Result<i64> {
        let at = now();
        let id = sqlx::query_scalar(
            "INSERT INTO offers (lead_id, brokerage_id, agent_id, offered_at, deadline)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(lead_id)
        .bind(brokerage_id)
        .bind(agent_id)
        .bind(&at)
        .bind(deadline)
        .fetch_one(&mut *self.tx)
        .await?;
        self.add_event(
            lead_id,
            &at,
            "offered",
            "leadmail",
            None,
            Some(agent_id),
            Some(&format!("offer {id}, to accept by {deadline}")),
        )
        .await?;
        Ok(id)
    }

    /// Closes an open offer; `by` is the agent who acted, or "leadmail".
    pub async fn close_offer(
        &mut self,
        lead_id: i64,
        offer_id: i64,
        state: OfferState,
        by: &str,
    ) -> Result<()> {
        let at = now();
        let agent: String = sqlx::query_scalar(
            "UPDATE offers SET state = $2, decided_at = $3, decided_by = $4
             WHERE id = $1 AND state = 'open' RETURNING agent_id",
        )
        .bind(offer_id)
        .bind(state.as_str())
        .bind(&at)
        .bind(by)
        .fetch_one(&mut *self.tx)
        .await?;
        let note = match state {
            OfferState::Taken => format!("offer {offer_id}: another agent accepted first"),
            OfferState::Expired => format!("offer {offer_id}: the acceptance period passed"),
            other => format!("offer {offer_id} {}", other.as_str()),
        };
        self.add_event(
            lead_id,
            &at,
            state.as_str(),
            by,
            Some(&agent),
            None,
            Some(&note),
        )
        .await
    }

    /// Settles an offered lead on an agent (owner and user).
    pub async fn settle_lead(
        &mut self,
        lead_id: i64,
        agent_id: &str,
        referral_fee_percent: Option<u32>,
        note: &str,
    ) -> Result<()> {
        let at = now();
        sqlx::query(
            "UPDATE leads SET status = 'assigned', owner_id = $2, user_id = $2,
                referral_fee_percent = $3
             WHERE id = $1",
        )
        .bind(lead_id)
        .bind(agent_id)
        .bind(referral_fee_percent.map(i64::from))
        .execute(&mut *self.tx)
        .await?;
        self.add_event(
            lead_id,
            &at,
            "owner_changed",
            "leadmail",
            None,
            Some(agent_id),
            Some(note),
        )
        .await
    }

    /// Routes an offered lead anew (a direct offer nobody accepted goes to
    /// the general rules): a new owner and user, or a new offer plan.
    pub async fn reroute_lead(
        &mut self,
        lead_id: i64,
        d: &crate::route::RoutingDecision,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE leads SET kind = $2, owner_id = $3, user_id = $4, rule = $5, reason = $6,
                trace = $7, status = $8, offer_plan = COALESCE($9, offer_plan),
                referral_fee_percent = NULL
             WHERE id = $1",
        )
        .bind(lead_id)
        .bind(d.kind.as_str())
        .bind(&d.owner)
        .bind(&d.user)
        .bind(&d.rule)
        .bind(&d.reason)
        .bind(serde_json::to_string(d)?)
        .bind(if d.offer.is_some() {
            "offered"
        } else {
            "assigned"
        })
        .bind(d.offer.as_ref().map(serde_json::to_string).transpose()?)
        .execute(&mut *self.tx)
        .await?;
        let (kind, to) = match d.offer {
            Some(_) => ("offered", None),
            None => ("routed", Some(d.user.as_str())),
        };
        self.add_event(lead_id, &now(), kind, "leadmail", None, to, Some(&d.reason))
            .await
    }

    /// Out-of-office agents now.
    /// As of the first look in this transaction (see `StoreTx::routing_state`).
    pub async fn active_aways(&mut self, brokerage_id: &str, now: &str) -> Result<Vec<Away>> {
        if let Some(known) = self.state(brokerage_id).aways.clone() {
            return Ok(known);
        }
        let read = active_aways(&mut self.tx, brokerage_id, now).await?;
        self.state(brokerage_id).aways = Some(read.clone());
        Ok(read)
    }
}

async fn active_aways(
    conn: &mut sqlx::AnyConnection,
    brokerage_id: &str,
    now: &str,
) -> Result<Vec<Away>> {
    sqlx::query(
        "SELECT agent_id, delegate, until, by FROM aways
         WHERE brokerage_id = $1 AND (until IS NULL OR until > $2)",
    )
    .bind(brokerage_id)
    .bind(now)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Away {
            agent: r.try_get("agent_id")?,
            delegate: r.try_get("delegate")?,
            until: r.try_get("until")?,
            by: r.try_get("by")?,
        })
    })
    .collect()
}

impl Store {
    /// Leads with an open offer whose deadline is at or before `now`.
    pub async fn leads_with_due_offers(&self, now: &str) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT lead_id FROM offers WHERE state = 'open' AND deadline <= $1
             ORDER BY lead_id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The earliest deadline of any open offer.
    pub async fn next_offer_deadline(&self) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(deadline) FROM offers WHERE state = 'open'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn offer(&self, id: i64) -> Result<Option<OfferRow>> {
        sqlx::query(&format!("{OFFER_ROW_SELECT} WHERE o.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(offer_row)
            .transpose()
    }

    /// Offers, newest first; `open_only` leaves out decided ones.
    pub async fn list_offers(
        &self,
        brokerage: Option<&str>,
        agent: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<OfferRow>> {
        sqlx::query(&format!(
            "{OFFER_ROW_SELECT} WHERE ($1 IS NULL OR o.brokerage_id = $1)
               AND ($2 IS NULL OR o.agent_id = $2) AND (NOT $3 OR o.state = 'open')
             ORDER BY o.id DESC"
        ))
        .bind(brokerage)
        .bind(agent)
        .bind(open_only)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(offer_row)
        .collect()
    }

    pub async fn set_away(
        &self,
        brokerage_id: &str,
        agent_id: &str,
        delegate: Option<&str>,
        until: Option<&str>,
        by: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO aways (brokerage_id, agent_id, delegate, until, since, by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (brokerage_id, agent_id) DO UPDATE SET
               delegate = excluded.delegate, until = excluded.until,
               since = excluded.since, by = excluded.by",
        )
        .bind(brokerage_id)
        .bind(agent_id)
        .bind(delegate)
        .bind(until)
        .bind(now())
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends an out-of-office; `false` when the agent was not away.
    pub async fn set_back(&self, brokerage_id: &str, agent_id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM aways WHERE brokerage_id = $1 AND agent_id = $2")
            .bind(brokerage_id)
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The stored round-robin positions of a brokerage's pools.
    pub async fn cursors(
        &self,
        brokerage_id: &str,
    ) -> Result<std::collections::HashMap<String, i64>> {
        let mut conn = self.pool.acquire().await?;
        super::cursors(&mut conn, brokerage_id).await
    }

    /// (source, user, status) of each lead created at or after `since`.
    pub async fn leads_since(
        &self,
        brokerage_id: &str,
        since: &str,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT source, user_id, status FROM leads WHERE brokerage_id = $1 AND created_at >= $2",
        )
        .bind(brokerage_id)
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// (offered_at, decided_at) of every accepted offer.
    pub async fn accepted_offer_times(&self, brokerage_id: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT offered_at, decided_at FROM offers
             WHERE brokerage_id = $1 AND state = 'accepted' AND decided_at IS NOT NULL",
        )
        .bind(brokerage_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn aways(&self, brokerage_id: &str) -> Result<Vec<Away>> {
        let mut conn = self.pool.acquire().await?;
        active_aways(&mut conn, brokerage_id, &now()).await
    }
}
