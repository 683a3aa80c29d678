//! Inbox leases in the database: which `leadmail run` works which inbox.
//! Taking and renewing a lease is one write transaction (`BEGIN IMMEDIATE`),
//! so two instances never both hold one.

use sqlx::Row;

use super::{Result, Store, now, time_after};

/// Who holds an inbox, as `leadmail status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lease {
    pub holder: String,
    pub acquired_at: String,
    pub expires_at: String,
}

impl Store {
    /// Takes or renews the inbox's lease for `holder` until now + `ttl`;
    /// false when another holder's lease has not expired, unless that holder
    /// is `dead` (known to have exited).
    pub async fn take_lease(
        &self,
        brokerage_id: &str,
        holder: &str,
        ttl: std::time::Duration,
        dead: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let at = now();
        let current =
            sqlx::query("SELECT holder, expires_at FROM inbox_leases WHERE brokerage_id = $1")
                .bind(brokerage_id)
                .fetch_optional(&mut *tx.tx)
                .await?;
        let renewing = match &current {
            Some(r) => {
                let other: String = r.try_get("holder")?;
                let expires: String = r.try_get("expires_at")?;
                if other != holder && expires > at && dead != Some(other.as_str()) {
                    return Ok(false);
                }
                other == holder
            }
            None => false,
        };
        sqlx::query(
            "INSERT INTO inbox_leases (brokerage_id, holder, acquired_at, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (brokerage_id) DO UPDATE SET holder = excluded.holder,
               expires_at = excluded.expires_at,
               acquired_at = CASE WHEN $5 THEN inbox_leases.acquired_at ELSE excluded.acquired_at END",
        )
        .bind(brokerage_id)
        .bind(holder)
        .bind(&at)
        .bind(time_after(ttl))
        .bind(renewing)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives the lease up (clean shutdown), so that another instance need not wait.
    pub async fn release_lease(&self, brokerage_id: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM inbox_leases WHERE brokerage_id = $1 AND holder = $2")
            .bind(brokerage_id)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The inbox's lease, if one is in force.
    pub async fn lease(&self, brokerage_id: &str) -> Result<Option<Lease>> {
        let row = sqlx::query(
            "SELECT holder, acquired_at, expires_at FROM inbox_leases
             WHERE brokerage_id = $1 AND expires_at > $2",
        )
        .bind(brokerage_id)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Lease {
                holder: r.try_get("holder")?,
                acquired_at: r.try_get("acquired_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }
}
