//! Notify: tell the assigned agent about each lead, by email, exactly once.
//!
//! A transactional outbox: [`lead_notifications`] (pure) turns a stored lead
//! into rows that the pipeline writes in the same transaction as the lead;
//! the [`sender`] delivers due rows over SMTP and marks them. A crash never
//! loses a notification (the row is committed with the lead) and never sends
//! one twice, except in the window between the server accepting a message
//! and the row being marked sent: then the same deterministic Message-ID
//! goes out again, so mail clients and servers recognise the copy.
//! Every message carries `Auto-Submitted: auto-generated` and
//! `X-Leadmail-Notification`, which the parser ignores: leadmail never
//! ingests its own mail.

pub mod render;
pub mod sender;

use crate::config::{BrokerageConfig, Config};
use crate::lead::ParsedMessage;
use crate::route::RoutingDecision;
use crate::store::NewNotification;

/// Whether notifications are on: enabled and an SMTP server configured.
pub fn active(config: &Config) -> bool {
    config.notify.enabled && config.smtp.is_some()
}

/// The domain notifications are sent from (for their Message-IDs).
pub fn from_domain(config: &Config) -> String {
    config
        .smtp
        .as_ref()
        .and_then(|s| s.from.parse::<lettre::message::Mailbox>().ok())
        .map(|m| m.email.domain().to_string())
        .unwrap_or_else(|| "leadmail.invalid".to_string())
}

fn lead_url(config: &Config, lead_id: i64) -> Option<String> {
    config
        .notify
        .lead_url_template
        .as_ref()
        .map(|t| t.replace("{id}", &lead_id.to_string()))
}

/// The address an agent is notified at: their first configured email.
fn agent_address<'a>(b: &'a BrokerageConfig, agent: &str) -> Option<(&'a str, &'a str)> {
    b.agents
        .iter()
        .find(|a| a.id == agent)
        .and_then(|a| a.emails.first().map(|e| (a.name.as_str(), e.as_str())))
}

/// One notification to an agent: None when notifications are off or the
/// agent has no email address.
#[allow(clippy::too_many_arguments)]
fn to_agent(
    config: &Config,
    brokerage: &BrokerageConfig,
    lead_id: Option<i64>,
    kind: &'static str,
    agent: &str,
    reply_to: Option<String>,
    r: render::Rendered,
    message_id: String,
) -> Option<NewNotification> {
    if !active(config) {
        return None;
    }
    let (_, address) = agent_address(brokerage, agent)?;
    Some(NewNotification {
        brokerage_id: brokerage.id.clone(),
        lead_id,
        kind,
        agent_id: agent.to_string(),
        recipient: address.to_string(),
        reply_to,
        subject: r.subject,
        body_text: r.text,
        body_html: r.html,
        message_id,
    })
}

/// The notifications a new lead sends: its user, and its owner when
/// `owner_too` and the owner is someone else. Agents without an email
/// address get none.
pub fn lead_notifications(
    config: &Config,
    brokerage: &BrokerageConfig,
    lead_id: i64,
    lead: &ParsedMessage,
    decision: &RoutingDecision,
) -> Vec<NewNotification> {
    if !active(config) {
        return Vec::new();
    }
    let mut recipients = vec![decision.user.as_str()];
    if config.notify.owner_too && decision.owner != decision.user {
        recipients.push(decision.owner.as_str());
    }
    let domain = from_domain(config);
    recipients
        .into_iter()
        .filter_map(|agent| {
            let r = render::new_lead(&render::LeadNotice {
                lead_id,
                lead,
                decision,
                agent_id: agent,
                lead_url: lead_url(config, lead_id),
            });
            to_agent(
                config,
                brokerage,
                Some(lead_id),
                "lead",
                agent,
                lead.contact.email.clone(),
                r,
                format!("leadmail.lead{lead_id}.{agent}@{domain}"),
            )
        })
        .collect()
}

/// The short note to a lead's current user when the person asks again.
pub fn repeat_notification(
    config: &Config,
    brokerage: &BrokerageConfig,
    lead_id: i64,
    message_row: i64,
    user: &str,
    lead: &ParsedMessage,
) -> Option<NewNotification> {
    to_agent(
        config,
        brokerage,
        Some(lead_id),
        "repeat",
        user,
        lead.contact.email.clone(),
        render::repeat_inquiry(lead_id, lead, lead_url(config, lead_id)),
        format!(
            "leadmail.repeat{message_row}.{user}@{}",
            from_domain(config)
        ),
    )
}

/// The offer email to one agent (no contact data in it).
#[allow(clippy::too_many_arguments)]
pub fn offer_notification(
    config: &Config,
    brokerage: &BrokerageConfig,
    lead_id: i64,
    offer_id: i64,
    agent: &str,
    lead: &ParsedMessage,
    deadline: &str,
    period: &str,
    referral_fee_percent: u32,
    link: Option<String>,
) -> Option<NewNotification> {
    let r = render::offer(&render::OfferNotice {
        lead_id,
        offer_id,
        lead,
        deadline,
        period,
        referral_fee_percent,
        link,
    });
    to_agent(
        config,
        brokerage,
        Some(lead_id),
        "offer",
        agent,
        None,
        r,
        format!("leadmail.offer{offer_id}@{}", from_domain(config)),
    )
}

/// To an agent whose all-at-once offer another agent accepted first.
pub fn taken_notification(
    config: &Config,
    brokerage: &BrokerageConfig,
    lead_id: i64,
    offer_id: i64,
    agent: &str,
    lead: &ParsedMessage,
) -> Option<NewNotification> {
    to_agent(
        config,
        brokerage,
        Some(lead_id),
        "offer_taken",
        agent,
        None,
        render::offer_taken(lead_id, lead),
        format!("leadmail.taken{offer_id}@{}", from_domain(config)),
    )
}
