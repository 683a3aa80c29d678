//! Operations people perform on the directory and on leads: halting and
//! resuming agents, reassigning leads, importing listings. Each checks who
//! may do it against the configured directory, then records it in the store
//! with the actor and, for lead changes, the note that explains it.

use serde::Serialize;

use crate::config::{BrokerageConfig, Config};
use crate::route::{Away, Halt, address};
use crate::store::{Assignee, ListingRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no brokerage {0:?} in the configuration")]
    UnknownBrokerage(String),
    #[error("no agent {agent:?} in brokerage {brokerage:?}")]
    UnknownAgent { brokerage: String, agent: String },
    #[error("agent {0:?} is inactive and cannot be given leads")]
    InactiveAgent(String),
    #[error("{0:?} is not an admin of brokerage {1:?}: only admins may halt or resume agents")]
    NotAdmin(String, String),
    #[error(
        "{actor:?} may not reassign lead {lead}: only the brokerage's admins and the lead's owner may"
    )]
    NotAllowed { actor: String, lead: i64 },
    #[error("no lead with id {0}")]
    UnknownLead(i64),
    #[error("a note explaining the change is required")]
    MissingNote,
    #[error("expected BROKERAGE/AGENT, got {0:?}")]
    BadTarget(String),
    #[error("invalid time {0:?}: use RFC 3339, e.g. 2026-12-24T09:00:00Z")]
    BadTime(String),
    #[error("line {line}: {message}")]
    Csv { line: u64, message: String },
    #[error("{actor:?} may not change {agent:?}'s out-of-office: only the agent and admins may")]
    NotSelfOrAdmin { actor: String, agent: String },
    #[error("{0:?} cannot be their own delegate")]
    SelfDelegate(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// Resolves `brokerage/agent` against the configuration.
pub fn target<'a>(config: &'a Config, spec: &str) -> Result<(&'a BrokerageConfig, String)> {
    let (b, a) = spec
        .split_once('/')
        .ok_or_else(|| AdminError::BadTarget(spec.to_string()))?;
    let brokerage = config
        .brokerage(b)
        .ok_or_else(|| AdminError::UnknownBrokerage(b.to_string()))?;
    if !brokerage.agents.iter().any(|x| x.id == a) {
        return Err(AdminError::UnknownAgent {
            brokerage: b.to_string(),
            agent: a.to_string(),
        });
    }
    Ok((brokerage, a.to_string()))
}

fn require_admin(brokerage: &BrokerageConfig, actor: &str) -> Result<()> {
    if brokerage.is_admin(actor) {
        Ok(())
    } else {
        Err(AdminError::NotAdmin(
            actor.to_string(),
            brokerage.id.clone(),
        ))
    }
}

/// How long until `deadline` from `now` (both RFC 3339), as "14m 05s"; "due" once passed.
pub fn time_left(now: &str, deadline: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    match (
        time::OffsetDateTime::parse(now, &Rfc3339),
        time::OffsetDateTime::parse(deadline, &Rfc3339),
    ) {
        (Ok(n), Ok(d)) if d > n => {
            let s = (d - n).whole_seconds();
            match s {
                s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
                s => format!("{}m {:02}s", s / 60, s % 60),
            }
        }
        (Ok(_), Ok(_)) => "due".to_string(),
        _ => deadline.to_string(),
    }
}

/// An RFC 3339 time with any offset, as the UTC form the store compares.
pub fn utc_time(raw: &str) -> Result<String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map_err(|_| AdminError::BadTime(raw.to_string()))?;
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|_| AdminError::BadTime(raw.to_string()))
}

/// Halts an agent until `until` (or until resumed). Admins only.
pub async fn halt(
    store: &Store,
    config: &Config,
    spec: &str,
    reason: &str,
    until: Option<&str>,
    by: &str,
) -> Result<Halt> {
    let (brokerage, agent) = target(config, spec)?;
    require_admin(brokerage, by)?;
    if reason.trim().is_empty() {
        return Err(AdminError::MissingNote);
    }
    let until = until.map(utc_time).transpose()?;
    store
        .halt(&brokerage.id, &agent, reason.trim(), until.as_deref(), by)
        .await?;
    Ok(Halt {
        agent,
        reason: reason.trim().to_string(),
        until,
        by: by.to_string(),
    })
}

/// Ends an agent's halt. Admins only. `false` when they were not halted.
pub async fn resume(store: &Store, config: &Config, spec: &str, by: &str) -> Result<bool> {
    let (brokerage, agent) = target(config, spec)?;
    require_admin(brokerage, by)?;
    Ok(store.resume(&brokerage.id, &agent, by).await?)
}

/// An agent marks themself out of office (or an admin does it for them):
/// no general leads or offers and no notifications meanwhile; their direct
/// leads go to `delegate` as user when one is named.
pub async fn away(
    store: &Store,
    config: &Config,
    spec: &str,
    delegate: Option<&str>,
    until: Option<&str>,
    by: &str,
) -> Result<Away> {
    let (brokerage, agent) = target(config, spec)?;
    require_self_or_admin(brokerage, &agent, by)?;
    if let Some(d) = delegate {
        if d == agent {
            return Err(AdminError::SelfDelegate(agent));
        }
        match brokerage.agents.iter().find(|a| a.id == d) {
            None => {
                return Err(AdminError::UnknownAgent {
                    brokerage: brokerage.id.clone(),
                    agent: d.to_string(),
                });
            }
            Some(a) if !a.active => return Err(AdminError::InactiveAgent(d.to_string())),
            Some(_) => {}
        }
    }
    let until = until.map(utc_time).transpose()?;
    store
        .set_away(&brokerage.id, &agent, delegate, until.as_deref(), by)
        .await?;
    Ok(Away {
        agent,
        delegate: delegate.map(str::to_string),
        until,
        by: by.to_string(),
    })
}

/// Ends an out-of-office; `false` when the agent was not away.
pub async fn back(store: &Store, config: &Config, spec: &str, by: &str) -> Result<bool> {
    let (brokerage, agent) = target(config, spec)?;
    require_self_or_admin(brokerage, &agent, by)?;
    Ok(store.set_back(&brokerage.id, &agent).await?)
}

fn require_self_or_admin(brokerage: &BrokerageConfig, agent: &str, actor: &str) -> Result<()> {
    if actor == agent || brokerage.is_admin(actor) {
        Ok(())
    } else {
        Err(AdminError::NotSelfOrAdmin {
            actor: actor.to_string(),
            agent: agent.to_string(),
        })
    }
}

/// Changes a lead's owner or user. Allowed for the brokerage's admins and the
/// lead's current owner; the note is required. Returns the previous agent.
pub async fn reassign(
    store: &Store,
    config: &Config,
    lead_id: i64,
    which: Assignee,
    to: &str,
    note: &str,
    by: &str,
) -> Result<String> {
    if note.trim().is_empty() {
        return Err(AdminError::MissingNote);
    }
    let lead = store
        .lead(lead_id)
        .await?
        .ok_or(AdminError::UnknownLead(lead_id))?;
    let brokerage = config
        .brokerage(&lead.brokerage)
        .ok_or_else(|| AdminError::UnknownBrokerage(lead.brokerage.clone()))?;
    if !brokerage.is_admin(by) && lead.owner != by {
        return Err(AdminError::NotAllowed {
            actor: by.to_string(),
            lead: lead_id,
        });
    }
    let agent = brokerage
        .agents
        .iter()
        .find(|a| a.id == to)
        .ok_or_else(|| AdminError::UnknownAgent {
            brokerage: brokerage.id.clone(),
            agent: to.to_string(),
        })?;
    if !agent.active {
        return Err(AdminError::InactiveAgent(to.to_string()));
    }
    Ok(store.reassign(lead_id, which, to, note.trim(), by).await?)
}

/// Parses a listings CSV (`mls_number,address,agent`, with a header row)
/// for one brokerage; every agent must be one of its agents.
pub fn parse_listings_csv(text: &str, brokerage: &BrokerageConfig) -> Result<Vec<ListingRow>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| AdminError::Csv {
            line: 1,
            message: e.to_string(),
        })?
        .clone();
    let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(mls), Some(addr), Some(agent)) =
        (column("mls_number"), column("address"), column("agent"))
    else {
        return Err(AdminError::Csv {
            line: 1,
            message: "the header must name mls_number, address and agent".to_string(),
        });
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| AdminError::Csv {
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let get = |i: usize| record.get(i).map(str::trim).filter(|s| !s.is_empty());
        let agent_id = get(agent).ok_or(AdminError::Csv {
            line,
            message: "agent is empty".to_string(),
        })?;
        if !brokerage.agents.iter().any(|a| a.id == agent_id) {
            return Err(AdminError::Csv {
                line,
                message: format!(
                    "{agent_id:?} is not an agent of brokerage {:?}",
                    brokerage.id
                ),
            });
        }
        let address = get(addr).map(str::to_string);
        let mls_number = get(mls).map(str::to_ascii_uppercase);
        if mls_number.is_none() && address.is_none() {
            return Err(AdminError::Csv {
                line,
                message: "a listing needs an MLS number or an address".to_string(),
            });
        }
        rows.push(ListingRow {
            address_key: address.as_deref().and_then(address::key),
            address,
            mls_number,
            agent: agent_id.to_string(),
        });
    }
    Ok(rows)
}

/// One agent as `agents list` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub brokerage: String,
    pub id: String,
    pub name: String,
    pub role: &'static str,
    pub active: bool,
    pub weight: u32,
    pub halted: Option<Halt>,
    pub away: Option<Away>,
}

/// Every configured agent with their halt, if one is in force.
pub async fn agents(
    store: &Store,
    config: &Config,
    brokerage: Option<&str>,
) -> Result<Vec<AgentStatus>> {
    let mut out = Vec::new();
    for b in config
        .brokerages
        .iter()
        .filter(|b| brokerage.is_none_or(|id| id == b.id))
    {
        let halts = store.halts(&b.id).await?;
        let aways = store.aways(&b.id).await?;
        for a in &b.agents {
            out.push(AgentStatus {
                brokerage: b.id.clone(),
                id: a.id.clone(),
                name: a.name.clone(),
                role: a.role.as_str(),
                active: a.active,
                weight: a.weight,
                halted: halts.iter().find(|h| h.agent == a.id).cloned(),
                away: aways.iter().find(|w| w.agent == a.id).cloned(),
            });
        }
    }
    Ok(out)
}

/// What a brokerage's admin looks at first.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub brokerage: String,
    /// For each rotating rule (round robin or offer): who is up next.
    pub pools: Vec<PoolNext>,
    pub open_offers: Vec<OpenOffer>,
    /// Leads created since midnight UTC.
    pub today: Today,
    /// Median time from an offer to its acceptance, over every accepted offer.
    pub median_seconds_to_accept: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct PoolNext {
    pub rule: String,
    pub assign: crate::config::Assign,
    /// None when everyone in the pool is halted, away or inactive.
    pub next: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OpenOffer {
    pub offer: i64,
    pub lead_id: i64,
    pub agent: String,
    pub source: String,
    pub deadline: String,
    pub time_left: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Today {
    pub total: usize,
    pub by_source: std::collections::BTreeMap<String, usize>,
    /// By assigned agent; leads still on offer count as "(offered)".
    pub by_agent: std::collections::BTreeMap<String, usize>,
}

pub async fn dashboard(
    store: &Store,
    config: &Config,
    brokerage: Option<&str>,
) -> Result<Vec<Dashboard>> {
    use time::format_description::well_known::Rfc3339;
    let now = crate::store::now();
    let midnight = time::OffsetDateTime::now_utc()
        .replace_time(time::Time::MIDNIGHT)
        .format(&Rfc3339)
        .unwrap_or_default();
    let mut out = Vec::new();
    for b in config
        .brokerages
        .iter()
        .filter(|b| brokerage.is_none_or(|id| id == b.id))
    {
        let directory = crate::route::Directory::from_config(b);
        let cursors = store.cursors(&b.id).await?;
        let halts = store.halts(&b.id).await?;
        let aways = store.aways(&b.id).await?;
        let pools = b
            .rules
            .iter()
            .filter(|r| {
                matches!(
                    r.assign,
                    crate::config::Assign::RoundRobin | crate::config::Assign::Offer
                )
            })
            .map(|r| PoolNext {
                rule: r.name.clone(),
                assign: r.assign,
                next: crate::route::up_next(&directory, r, &cursors, &halts, &aways),
            })
            .collect();
        let open_offers = store
            .list_offers(Some(&b.id), None, true)
            .await?
            .into_iter()
            .rev()
            .map(|o| OpenOffer {
                offer: o.id,
                lead_id: o.lead_id,
                agent: o.agent,
                source: o.source,
                time_left: time_left(&now, &o.deadline),
                deadline: o.deadline,
            })
            .collect();
        let mut today = Today::default();
        for (source, user, status) in store.leads_since(&b.id, &midnight).await? {
            today.total += 1;
            *today.by_source.entry(source).or_default() += 1;
            let agent = if status == "offered" {
                "(offered)".to_string()
            } else {
                user
            };
            *today.by_agent.entry(agent).or_default() += 1;
        }
        let mut waits: Vec<i64> = store
            .accepted_offer_times(&b.id)
            .await?
            .iter()
            .filter_map(|(from, to)| {
                let from = time::OffsetDateTime::parse(from, &Rfc3339).ok()?;
                let to = time::OffsetDateTime::parse(to, &Rfc3339).ok()?;
                Some((to - from).whole_seconds())
            })
            .collect();
        waits.sort_unstable();
        let median_seconds_to_accept = match waits.len() {
            0 => None,
            n if n % 2 == 1 => Some(waits[n / 2]),
            n => Some((waits[n / 2 - 1] + waits[n / 2]) / 2),
        };
        out.push(Dashboard {
            brokerage: b.id.clone(),
            pools,
            open_offers,
            today,
            median_seconds_to_accept,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> BrokerageConfig {
        let cfg = Config::from_sources(
            Some(
                "[[brokerages]]\nid = \"acme\"\nname = \"A\"\nlead_addresses = [\"l@a.example\"]\ndefault_owner = \"amy\"\n[[brokerages.agents]]\nid = \"amy\"\nname = \"Amy\"\nrole = \"admin\"\n[[brokerages.agents]]\nid = \"jane\"\nname = \"Jane\"\n",
            ),
            &[],
        )
        .unwrap();
        cfg.brokerages[0].clone()
    }

    #[test]
    fn listings_csv_with_quoted_addresses() {
        let rows = parse_listings_csv(
            "mls_number,address,agent\nmls1001,\"731 Mulberry Street, Ann Arbor, MI\",jane\n,12 Oak St,amy\n",
            &acme(),
        )
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].mls_number.as_deref(), Some("MLS1001"));
        assert_eq!(rows[0].address_key.as_deref(), Some("731 mulberry st"));
        assert_eq!(rows[1].mls_number, None);
    }

    #[test]
    fn listings_csv_errors_name_the_line() {
        let e = parse_listings_csv("mls_number,address,agent\nA1,1 St,zed\n", &acme()).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(parse_listings_csv("a,b\n", &acme()).is_err());
    }

    #[test]
    fn times_are_stored_in_utc() {
        assert_eq!(
            utc_time("2026-12-24T09:00:00+01:00").unwrap(),
            "2026-12-24T08:00:00Z"
        );
        assert!(utc_time("next tuesday").is_err());
    }
}
