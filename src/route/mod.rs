//! Route: decides a lead's owner and assigned user. Pure: the inputs are the
//! parsed lead, a snapshot of the brokerage's directory and rules, the
//! agents halted right now, the stored round-robin cursors and the agent of a
//! matching imported listing; the output is a [`RoutingDecision`] with the
//! cursor to store and a [`RoutingTrace`] that explains it. The caller reads
//! the cursors and writes the decision in one transaction, so concurrent
//! leads never take the same turn.
//!
//! Decision order (the first that applies wins, and the trace records it):
//! 1. sent to an agent's personal lead address -> direct;
//! 2. forwarded (or sent) by an agent, subject to `trust_forwarder` -> direct;
//! 3. the lead names its assigned agent and that agent is in the directory -> direct;
//! 4. it came from an agent's own website -> direct;
//! 5. the property is one of an agent's listings -> direct;
//! 6. otherwise general: the brokerage's rules, first match wins, then the
//!    brokerage's default owner. A lead always ends with an owner and a user.

pub mod address;
pub mod auth;

use std::collections::HashMap;

use serde::Serialize;

use crate::config::{
    Assign, BrokerageConfig, HaltedDirect, OfferMode, OwnerPolicy, Role, RoutingConfig, RuleConfig,
    TrustForwarder,
};
use crate::lead::ParsedMessage;
use crate::offer::OfferPlan;

/// One agent as routing sees it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub emails: Vec<String>,
    pub role: Role,
    pub lead_addresses: Vec<String>,
    pub websites: Vec<String>,
    pub listings: Vec<String>,
    pub weight: u32,
    pub active: bool,
    pub office: Option<String>,
}

/// A snapshot of one brokerage's people and rules, taken from the configuration.
#[derive(Debug, Clone)]
pub struct Directory {
    pub brokerage_id: String,
    pub default_owner: String,
    pub agents: Vec<Agent>,
    pub routing: RoutingConfig,
    pub rules: Vec<RuleConfig>,
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
                    lead_addresses: a.lead_addresses.clone(),
                    websites: a.websites.clone(),
                    listings: a.listings.clone(),
                    weight: a.weight,
                    active: a.active,
                    office: a.office.clone(),
                })
                .collect(),
            routing: b.routing.clone(),
            rules: b.rules.clone(),
        }
    }

    pub fn agent(&self, id: &str) -> Option<&Agent> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// The agent who sends from `email` (compared case-insensitively).
    pub fn agent_by_email(&self, email: &str) -> Option<&Agent> {
        let email = email.to_ascii_lowercase();
        self.agents.iter().find(|a| a.emails.contains(&email))
    }
}

/// An admin's halt on an agent, in force now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Halt {
    pub agent: String,
    pub reason: String,
    /// RFC 3339; `None` until resumed by hand.
    pub until: Option<String>,
    pub by: String,
}

/// An agent's own out-of-office, in force now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Away {
    pub agent: String,
    /// The colleague who works the agent's direct leads meanwhile.
    pub delegate: Option<String>,
    /// RFC 3339; `None` until the agent is back.
    pub until: Option<String>,
    pub by: String,
}

/// The rule name recorded for a direct lead offered to its agent
/// (`direct_auto_accept = false`).
pub const DIRECT_OFFER: &str = "direct";

/// Everything a routing decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct RouteInput<'a> {
    pub lead: &'a ParsedMessage,
    pub directory: &'a Directory,
    /// Halts in force now.
    pub halts: &'a [Halt],
    /// Agents out of office now.
    pub aways: &'a [Away],
    /// Route by the general rules only (a direct offer that nobody accepted).
    pub general_only: bool,
    /// Stored round-robin positions by pool.
    pub cursors: &'a HashMap<String, i64>,
    /// The agent of an imported listing that matches the lead's property.
    pub listing_agent: Option<&'a str>,
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

/// Which step of the decision order applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    PersonalAddress,
    Forwarder,
    AssignedAgent,
    AgentWebsite,
    AgentListing,
    GeneralRule,
    DefaultOwner,
}

/// The pool key of the implicit rule used when a brokerage has no rules.
pub const GENERAL_POOL: &str = "general";

/// A round-robin position to store with the lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CursorMove {
    pub pool: String,
    pub before: i64,
    pub after: i64,
}

/// One rule as evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub matched: bool,
    pub why: String,
}

/// An agent passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    pub agent: String,
    pub why: String,
}

/// Why the lead went where it went: answers "why did Jane get this lead?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoutingTrace {
    pub step: Step,
    /// Direct signals considered and not used, in order.
    pub notes: Vec<String>,
    pub rules: Vec<RuleTrace>,
    pub candidates: Vec<String>,
    pub skipped: Vec<Skip>,
    pub cursor: Option<CursorMove>,
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
    /// Left in the pond for manual distribution (owned and used by the default owner).
    pub unassigned: bool,
    /// Offered rather than assigned: who is offered it, how, for how long.
    /// Until someone accepts, the default owner holds it and it has no user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferPlan>,
    /// The out-of-office agent whose direct lead the user works as delegate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegated_from: Option<String>,
    #[serde(flatten)]
    pub trace: RoutingTrace,
}

impl RoutingDecision {
    /// The round-robin cursor to store in the same transaction as the lead.
    pub fn cursor(&self) -> Option<&CursorMove> {
        self.trace.cursor.as_ref()
    }
}

/// Routes one lead.
pub fn route(input: RouteInput<'_>) -> RoutingDecision {
    let dir = input.directory;
    let mut trace = RoutingTrace {
        step: Step::DefaultOwner,
        notes: Vec::new(),
        rules: Vec::new(),
        candidates: Vec::new(),
        skipped: Vec::new(),
        cursor: None,
    };
    let direct = if input.general_only {
        trace
            .notes
            .push("offered to its agent directly and not accepted: routed as general".into());
        None
    } else {
        direct_signal(input, &mut trace.notes)
    };
    if let Some((agent, step, why)) = direct {
        let halt = input.halts.iter().find(|h| h.agent == agent.id);
        match (agent.active, halt, dir.routing.halted_direct) {
            (false, _, _) => trace.notes.push(format!(
                "{why}, but {} is inactive: routed as general",
                agent.name
            )),
            (true, Some(h), HaltedDirect::Reroute) => trace.notes.push(format!(
                "{why}, but {} is halted ({}): routed as general",
                agent.name, h.reason
            )),
            (true, halt, _) => {
                let why = match halt {
                    Some(h) => format!("{why} (halted: {}, delivered anyway)", h.reason),
                    None => why,
                };
                trace.step = step;
                let owner = match dir.routing.direct_owner {
                    OwnerPolicy::Agent => agent.id.clone(),
                    OwnerPolicy::Brokerage => dir.default_owner.clone(),
                };
                // Out of office with a delegate: the colleague works it, the agent keeps it.
                let away = input.aways.iter().find(|a| a.agent == agent.id);
                let delegate = away
                    .and_then(|a| a.delegate.as_deref())
                    .and_then(|d| dir.agent(d))
                    .filter(|d| d.active);
                let (user, why) = match (away, delegate) {
                    (Some(_), Some(d)) => (
                        d.id.clone(),
                        format!(
                            "{why}; {} is out of office: delegated to {}",
                            agent.name, d.name
                        ),
                    ),
                    (Some(_), None) => (
                        agent.id.clone(),
                        format!(
                            "{why}; {} is out of office (no delegate): it waits",
                            agent.name
                        ),
                    ),
                    (None, _) => (agent.id.clone(), why),
                };
                let offer =
                    (!dir.routing.direct_auto_accept && away.is_none()).then(|| OfferPlan {
                        rule: DIRECT_OFFER.to_string(),
                        mode: OfferMode::OneAtATime,
                        candidates: vec![agent.id.clone()],
                        period_ms: dir.routing.direct_period.as_millis() as u64,
                        referral_fee_percent: 0,
                    });
                let (owner, user, why) = match offer {
                    Some(_) => (
                        dir.default_owner.clone(),
                        dir.default_owner.clone(),
                        format!(
                            "{why}: offered to {} (direct_auto_accept is off)",
                            agent.name
                        ),
                    ),
                    None => (owner, user, why),
                };
                let delegated_from = (user != agent.id).then(|| agent.id.clone());
                return RoutingDecision {
                    kind: RouteKind::Direct,
                    owner,
                    user,
                    rule: None,
                    reason: why,
                    unassigned: false,
                    offer,
                    delegated_from,
                    trace,
                };
            }
        }
    }
    general(input, trace)
}

/// The first direct signal that names an agent: (agent, step, reason).
fn direct_signal<'a>(
    input: RouteInput<'a>,
    notes: &mut Vec<String>,
) -> Option<(&'a Agent, Step, String)> {
    let dir = input.directory;
    let lead = input.lead;

    // 1. The agent's personal lead address.
    for r in &lead.envelope.recipients {
        let base = crate::pipeline::strip_plus_tag(r);
        if let Some(a) = dir
            .agents
            .iter()
            .find(|a| a.lead_addresses.contains(r) || a.lead_addresses.contains(&base))
        {
            let why = format!("sent to {}'s lead address {r}", a.name);
            return Some((a, Step::PersonalAddress, why));
        }
    }

    // 2. Forwarded (or sent) by an agent.
    let forwarder = lead
        .forwarded_by
        .as_deref()
        .or(lead.envelope.from.as_deref());
    if let Some((addr, a)) = forwarder.and_then(|f| dir.agent_by_email(f).map(|a| (f, a))) {
        let domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
        let trusted = match dir.routing.trust_forwarder {
            TrustForwarder::Any => true,
            TrustForwarder::Authenticated => auth::sender_authenticated(
                &lead.envelope.authentication_results,
                dir.routing.authserv_id.as_deref(),
                domain,
            ),
        };
        let verb = if lead.forwarded_by.is_some() {
            "forwarded"
        } else {
            "sent"
        };
        if trusted {
            let why = format!("{verb} by {} ({addr})", a.name);
            return Some((a, Step::Forwarder, why));
        }
        notes.push(format!(
            "{verb} by {addr}, but no DKIM/DMARC pass for {domain}: not credited to {}",
            a.name
        ));
    }

    // 3. The agent the lead names.
    if let Some(hint) = &lead.agent_hint {
        let by_email = hint.email.as_deref().and_then(|e| {
            dir.agent_by_email(e).or_else(|| {
                dir.agents
                    .iter()
                    .find(|a| a.lead_addresses.iter().any(|x| x == e))
            })
        });
        let by_name = || {
            hint.name.as_deref().and_then(|n| {
                dir.agents
                    .iter()
                    .find(|a| a.name.trim().eq_ignore_ascii_case(n.trim()))
            })
        };
        match by_email.or_else(by_name) {
            Some(a) => {
                let why = format!("the lead names {} as its agent", a.name);
                return Some((a, Step::AssignedAgent, why));
            }
            None => notes.push(format!(
                "the lead names {} as its agent, who is not in the directory",
                hint.email
                    .as_deref()
                    .or(hint.name.as_deref())
                    .unwrap_or("someone")
            )),
        }
    }

    // 4. The agent's own website.
    let url_host = lead
        .property
        .url
        .as_deref()
        .map(crate::config::website_domain);
    let sender_domain = lead
        .envelope
        .from
        .as_deref()
        .and_then(|f| f.rsplit_once('@'))
        .map(|(_, d)| d.to_string());
    let hosts = sender_domain
        .into_iter()
        .chain(url_host)
        .chain(lead.envelope.link_hosts.iter().cloned())
        .chain(std::iter::once(lead.source.to_ascii_lowercase()));
    for host in hosts {
        if let Some((a, site)) = dir.agents.iter().find_map(|a| {
            a.websites
                .iter()
                .find(|w| host == **w || host.ends_with(&format!(".{w}")))
                .map(|w| (a, w))
        }) {
            let why = format!("from {}'s website {site}", a.name);
            return Some((a, Step::AgentWebsite, why));
        }
    }

    // 5. The agent's listing.
    if let Some(mls) = lead.property.mls_number.as_deref() {
        let mls = mls.to_ascii_uppercase();
        if let Some(a) = dir.agents.iter().find(|a| a.listings.contains(&mls)) {
            let why = format!("{}'s listing (MLS {mls})", a.name);
            return Some((a, Step::AgentListing, why));
        }
    }
    if let Some(a) = input.listing_agent.and_then(|id| dir.agent(id)) {
        let what = lead
            .property
            .mls_number
            .as_deref()
            .map(|m| format!("MLS {m}"))
            .or_else(|| lead.property.address.clone())
            .unwrap_or_default();
        let why = format!("{}'s listing ({what})", a.name);
        return Some((a, Step::AgentListing, why));
    }
    None
}

/// Step 6: the general rules, then the default owner.
fn general(input: RouteInput<'_>, mut trace: RoutingTrace) -> RoutingDecision {
    let dir = input.directory;
    let implicit;
    let rules: &[RuleConfig] = if dir.rules.is_empty() {
        implicit = [RuleConfig {
            name: GENERAL_POOL.to_string(),
            sources: Vec::new(),
            lead_types: Vec::new(),
            min_price: None,
            max_price: None,
            zips: Vec::new(),
            assign: Assign::RoundRobin,
            pool: Vec::new(),
            agent: None,
            offices: Vec::new(),
            offer_mode: crate::config::OfferMode::default(),
            acceptance_period: std::time::Duration::ZERO,
            referral_fee_percent: 0,
        }];
        &implicit
    } else {
        &dir.rules
    };
    let unavailable = |agent: &Agent| unavailable(agent, input.halts, input.aways);
    let owner_for = |agent: &str| match dir.routing.general_owner {
        OwnerPolicy::Agent => agent.to_string(),
        OwnerPolicy::Brokerage => dir.default_owner.clone(),
    };

    for rule in rules {
        if let Err(why) = rule_matches(rule, input.lead) {
            trace.rules.push(RuleTrace {
                rule: rule.name.clone(),
                matched: false,
                why,
            });
            continue;
        }
        trace.rules.push(RuleTrace {
            rule: rule.name.clone(),
            matched: true,
            why: "every condition holds".to_string(),
        });
        match rule.assign {
            Assign::Pond => {
                trace.step = Step::GeneralRule;
                return RoutingDecision {
                    kind: RouteKind::General,
                    owner: dir.default_owner.clone(),
                    user: dir.default_owner.clone(),
                    rule: Some(rule.name.clone()),
                    reason: format!(
                        "rule {:?}: left in the pond for manual distribution",
                        rule.name
                    ),
                    unassigned: true,
                    offer: None,
                    delegated_from: None,
                    trace,
                };
            }
            Assign::Agent => {
                let id = rule.agent.as_deref().unwrap_or("");
                match dir.agent(id).map(|a| (a, unavailable(a))) {
                    Some((a, None)) => {
                        trace.step = Step::GeneralRule;
                        trace.candidates = vec![a.id.clone()];
                        return RoutingDecision {
                            kind: RouteKind::General,
                            owner: owner_for(&a.id),
                            user: a.id.clone(),
                            rule: Some(rule.name.clone()),
                            reason: format!("rule {:?}: assigned to {}", rule.name, a.name),
                            unassigned: false,
                            offer: None,
                            delegated_from: None,
                            trace,
                        };
                    }
                    Some((_, Some(why))) => trace.skipped.push(Skip {
                        agent: id.to_string(),
                        why,
                    }),
                    None => trace.skipped.push(Skip {
                        agent: id.to_string(),
                        why: "not in the directory".to_string(),
                    }),
                }
            }
            Assign::Offer => {
                let members = rule_members(dir, rule);
                let sequence = weighted_sequence(&members);
                trace.candidates = members.iter().map(|a| a.id.clone()).collect();
                let before = input.cursors.get(&rule.name).copied().unwrap_or(0);
                let len = sequence.len() as i64;
                let mut candidates: Vec<String> = Vec::new();
                let mut first_slot = None;
                for step in 0..len {
                    let slot = (before + step).rem_euclid(len);
                    let agent = sequence[slot as usize];
                    if candidates.contains(&agent.id) {
                        continue;
                    }
                    // Everyone stays a candidate (one away now may be back
                    // when the lead comes round); the first offer goes to
                    // the first available.
                    candidates.push(agent.id.clone());
                    if let Some(why) = unavailable(agent) {
                        trace.skipped.push(Skip {
                            agent: agent.id.clone(),
                            why,
                        });
                        continue;
                    }
                    first_slot.get_or_insert((slot, agent.id.clone()));
                }
                let Some((first_slot, first)) = first_slot else {
                    continue;
                };
                trace.step = Step::GeneralRule;
                let period = humane(rule.acceptance_period);
                let reason = match rule.offer_mode {
                    OfferMode::OneAtATime => {
                        // The rotation moves on as if the first agent had been assigned it.
                        trace.cursor = Some(CursorMove {
                            pool: rule.name.clone(),
                            before,
                            after: first_slot + 1,
                        });
                        format!(
                            "rule {:?}: offered one at a time, {first} first ({period} to accept)",
                            rule.name
                        )
                    }
                    OfferMode::AllAtOnce => format!(
                        "rule {:?}: offered to every available agent at once ({period} to accept)",
                        rule.name
                    ),
                };
                return RoutingDecision {
                    kind: RouteKind::General,
                    owner: dir.default_owner.clone(),
                    user: dir.default_owner.clone(),
                    rule: Some(rule.name.clone()),
                    reason,
                    unassigned: false,
                    delegated_from: None,
                    offer: Some(OfferPlan {
                        rule: rule.name.clone(),
                        mode: rule.offer_mode,
                        candidates,
                        period_ms: rule.acceptance_period.as_millis() as u64,
                        referral_fee_percent: rule.referral_fee_percent,
                    }),
                    trace,
                };
            }
            Assign::RoundRobin => {
                let members = rule_members(dir, rule);
                let sequence = weighted_sequence(&members);
                trace.candidates = members.iter().map(|a| a.id.clone()).collect();
                if sequence.is_empty() {
                    continue;
                }
                let before = input.cursors.get(&rule.name).copied().unwrap_or(0);
                let len = sequence.len() as i64;
                for step in 0..len {
                    let slot = (before + step).rem_euclid(len);
                    let agent = sequence[slot as usize];
                    if let Some(why) = unavailable(agent) {
                        if !trace.skipped.iter().any(|s| s.agent == agent.id) {
                            trace.skipped.push(Skip {
                                agent: agent.id.clone(),
                                why,
                            });
                        }
                        continue;
                    }
                    trace.step = Step::GeneralRule;
                    trace.cursor = Some(CursorMove {
                        pool: rule.name.clone(),
                        before,
                        after: slot + 1,
                    });
                    return RoutingDecision {
                        kind: RouteKind::General,
                        owner: owner_for(&agent.id),
                        user: agent.id.clone(),
                        rule: Some(rule.name.clone()),
                        reason: format!(
                            "rule {:?}: round robin, {}'s turn (slot {} of {})",
                            rule.name,
                            agent.name,
                            slot + 1,
                            len
                        ),
                        unassigned: false,
                        offer: None,
                        delegated_from: None,
                        trace,
                    };
                }
            }
        }
    }
    trace.step = Step::DefaultOwner;
    let why = if trace.rules.iter().any(|r| r.matched) {
        "every matching rule's agents are halted or inactive"
    } else {
        "no rule matched"
    };
    RoutingDecision {
        kind: RouteKind::General,
        owner: dir.default_owner.clone(),
        user: dir.default_owner.clone(),
        rule: None,
        reason: format!("{why}: the brokerage's default owner"),
        unassigned: false,
        offer: None,
        delegated_from: None,
        trace,
    }
}

/// Why an agent gets no general lead or offer now, if they don't.
fn unavailable(agent: &Agent, halts: &[Halt], aways: &[Away]) -> Option<String> {
    if !agent.active {
        Some("inactive".to_string())
    } else if let Some(h) = halts.iter().find(|h| h.agent == agent.id) {
        Some(format!("halted: {}", h.reason))
    } else {
        aways
            .iter()
            .any(|a| a.agent == agent.id)
            .then(|| "out of office".to_string())
    }
}

/// Who gets (or is offered) a rule's next lead now, by its rotation.
pub fn up_next(
    dir: &Directory,
    rule: &RuleConfig,
    cursors: &HashMap<String, i64>,
    halts: &[Halt],
    aways: &[Away],
) -> Option<String> {
    let members = rule_members(dir, rule);
    let sequence = weighted_sequence(&members);
    let len = sequence.len() as i64;
    let before = cursors.get(&rule.name).copied().unwrap_or(0);
    (0..len)
        .map(|step| sequence[(before + step).rem_euclid(len) as usize])
        .find(|a| unavailable(a, halts, aways).is_none())
        .map(|a| a.id.clone())
}

/// A rule's pool (every agent with role "agent" when it names none), limited
/// to the rule's offices.
fn rule_members<'a>(dir: &'a Directory, rule: &RuleConfig) -> Vec<&'a Agent> {
    let members: Vec<&Agent> = if rule.pool.is_empty() {
        dir.agents
            .iter()
            .filter(|a| a.role == Role::Agent)
            .collect()
    } else {
        rule.pool.iter().filter_map(|id| dir.agent(id)).collect()
    };
    members
        .into_iter()
        .filter(|a| {
            rule.offices.is_empty()
                || a.office
                    .as_ref()
                    .is_some_and(|o| rule.offices.iter().any(|r| r.eq_ignore_ascii_case(o)))
        })
        .collect()
}

/// "15m", "2h", "90s": a period as people write it.
pub fn humane(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A weighted rotation: round r holds every agent whose weight exceeds r, so
/// weights 2 and 1 give [a, b, a] rather than [a, a, b].
fn weighted_sequence<'a>(members: &[&'a Agent]) -> Vec<&'a Agent> {
    let rounds = members.iter().map(|a| a.weight).max().unwrap_or(0).min(100);
    (0..rounds)
        .flat_map(|r| members.iter().copied().filter(move |a| a.weight > r))
        .collect()
}

/// `Ok` when every condition of the rule holds for the lead, else why not.
fn rule_matches(rule: &RuleConfig, lead: &ParsedMessage) -> Result<(), String> {
    if !rule.sources.is_empty()
        && !rule
            .sources
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&lead.source))
    {
        return Err(format!(
            "source {} is not one of {:?}",
            lead.source, rule.sources
        ));
    }
    if !rule.lead_types.is_empty() {
        match lead.lead_type {
            Some(t) if rule.lead_types.contains(&t) => {}
            Some(t) => return Err(format!("lead type {} does not match", t.as_str())),
            None => return Err("the lead type is unknown".to_string()),
        }
    }
    if rule.min_price.is_some() || rule.max_price.is_some() {
        let Some(price) = lead.property.price else {
            return Err("the price is unknown".to_string());
        };
        if rule.min_price.is_some_and(|lo| price < lo)
            || rule.max_price.is_some_and(|hi| price > hi)
        {
            return Err(format!("price {price} is out of range"));
        }
    }
    if !rule.zips.is_empty() {
        match lead.property.address.as_deref().and_then(zip_of) {
            Some(zip) if rule.zips.iter().any(|z| z == zip) => {}
            Some(zip) => return Err(format!("zip {zip} is not one of {:?}", rule.zips)),
            None => return Err("the zip code is unknown".to_string()),
        }
    }
    Ok(())
}

/// The five-digit zip code at the end of an address.
fn zip_of(address: &str) -> Option<&str> {
    address
        .split(|c: char| !c.is_ascii_digit() && c != '-')
        .rev()
        .find(|t| !t.is_empty())
        .map(|t| t.split('-').next().unwrap_or(t))
        .filter(|t| t.len() == 5)
}

#[cfg(test)]
mod tests;
