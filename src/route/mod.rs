//! Route: decides a lead's owner and assigned user. Pure: the inputs are the
//! parsed lead, a snapshot of the brokerage's directory and the round-robin
//! cursor; the output is a [`RoutingDecision`] including the cursor to store.
//! The caller reads the cursor and writes the decision in one transaction, so
//! concurrent leads never both take the same turn.

use serde::Serialize;

use crate::config::{BrokerageConfig, Role};
use crate::lead::ParsedMessage;

/// One agent as routing sees it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub emails: Vec<String>,
    pub role: Role,
}

/// A snapshot of one brokerage's people, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Directory {
    pub brokerage_id: String,
    pub default_owner: String,
    pub agents: Vec<Agent>,
}

impl Directory {
    pub fn from_config(b: &BrokerageConfig) -> Directory {
        Directory {
            brokerage_id: b.id.clone(),
            default_owner: b.default_owner.clone(),
            agents: b
                .agents
                .iter()
                .map(|a| Agent {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    emails: a.emails.clone(),
                    role: a.role,
                })
                .collect(),
        }
    }

    /// The agent who sends from `email` (compared case-insensitively).
    pub fn agent_by_email(&self, email: &str) -> Option<&Agent> {
        let email = email.to_ascii_lowercase();
        self.agents.iter().find(|a| a.emails.contains(&email))
    }

    /// The general round-robin pool: every agent with role "agent", in configuration order.
    fn general_pool(&self) -> Vec<&Agent> {
        self.agents
            .iter()
            .filter(|a| a.role == Role::Agent)
            .collect()
    }
}

/// Direct-to-user or brokerage-generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Direct,
    General,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Direct => "direct",
            RouteKind::General => "general",
        }
    }
}

/// The pool key of the brokerage-wide round robin.
pub const GENERAL_POOL: &str = "general";

/// A round-robin position to store with the lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorMove {
    pub pool: String,
    pub before: i64,
    pub after: i64,
}

/// Who gets the lead, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingDecision {
    pub kind: RouteKind,
    pub owner: String,
    pub user: String,
    /// The general rule that applied, if any.
    pub rule: Option<String>,
    /// One sentence a person can read: why this agent.
    pub reason: String,
    /// Round-robin cursor to store in the same transaction as the lead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<CursorMove>,
}

/// Routes one lead. `cursor` is the stored position of the general pool.
pub fn route(lead: &ParsedMessage, dir: &Directory, cursor: i64) -> RoutingDecision {
    let forwarder = lead
        .forwarded_by
        .as_deref()
        .or(lead.envelope.from.as_deref())
        .and_then(|addr| dir.agent_by_email(addr).map(|a| (addr, a)));
    if let Some((addr, agent)) = forwarder {
        return RoutingDecision {
            kind: RouteKind::Direct,
            owner: agent.id.clone(),
            user: agent.id.clone(),
            rule: None,
            reason: format!("forwarded by {} ({addr})", agent.name),
            cursor: None,
        };
    }
    let pool = dir.general_pool();
    if pool.is_empty() {
        return RoutingDecision {
            kind: RouteKind::General,
            owner: dir.default_owner.clone(),
            user: dir.default_owner.clone(),
            rule: None,
            reason: "no agents in the general pool: brokerage default owner".to_string(),
            cursor: None,
        };
    }
    let len = pool.len() as i64;
    let slot = cursor.rem_euclid(len);
    let agent = pool[slot as usize];
    RoutingDecision {
        kind: RouteKind::General,
        owner: agent.id.clone(),
        user: agent.id.clone(),
        rule: Some("round_robin".to_string()),
        reason: format!(
            "round robin: turn {} of {} agents in the general pool",
            slot + 1,
            len
        ),
        cursor: Some(CursorMove {
            pool: GENERAL_POOL.to_string(),
            before: cursor,
            after: slot + 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{Contact, Envelope, Property, Verdict};

    fn dir() -> Directory {
        let agent = |id: &str, role| Agent {
            id: id.to_string(),
            name: id.to_uppercase(),
            emails: vec![format!("{id}@acme.example")],
            role,
        };
        Directory {
            brokerage_id: "acme".into(),
            default_owner: "amy".into(),
            agents: vec![
                agent("amy", Role::Admin),
                agent("jane", Role::Agent),
                agent("bob", Role::Agent),
            ],
        }
    }

    fn lead(forwarded_by: Option<&str>, from: Option<&str>) -> ParsedMessage {
        ParsedMessage {
            verdict: Verdict::Lead,
            reason: None,
            source: "generic".into(),
            lead_type: None,
            contact: Contact::default(),
            property: Property::default(),
            message: None,
            forwarded_by: forwarded_by.map(str::to_string),
            agent_hint: None,
            message_id: None,
            subject: None,
            envelope: Envelope {
                from: from.map(str::to_string),
                recipients: vec![],
            },
        }
    }

    #[test]
    fn forwarded_by_an_agent_is_direct_to_them() {
        let d = route(&lead(Some("BOB@acme.example"), None), &dir(), 0);
        assert_eq!(
            (d.kind, d.owner.as_str(), d.user.as_str()),
            (RouteKind::Direct, "bob", "bob")
        );
        assert!(d.cursor.is_none(), "direct leads do not take a turn");
    }

    #[test]
    fn sent_by_an_agent_is_direct_to_them() {
        let d = route(&lead(None, Some("jane@acme.example")), &dir(), 0);
        assert_eq!((d.kind, d.owner.as_str()), (RouteKind::Direct, "jane"));
    }

    #[test]
    fn forwarded_by_a_stranger_is_general() {
        let d = route(&lead(Some("x@elsewhere.example"), None), &dir(), 0);
        assert_eq!(d.kind, RouteKind::General);
    }

    #[test]
    fn round_robin_rotates_over_agents_only() {
        let mut cursor = 0;
        let mut got = Vec::new();
        for _ in 0..4 {
            let d = route(&lead(None, Some("someone@example.com")), &dir(), cursor);
            cursor = d.cursor.as_ref().unwrap().after;
            got.push(d.user);
        }
        assert_eq!(got, ["jane", "bob", "jane", "bob"]);
    }

    #[test]
    fn empty_pool_goes_to_default_owner() {
        let mut d = dir();
        d.agents.retain(|a| a.role == Role::Admin);
        let r = route(&lead(None, None), &d, 5);
        assert_eq!((r.owner.as_str(), r.user.as_str()), ("amy", "amy"));
    }
}
