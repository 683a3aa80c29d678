//! The words of each notification, as plain text and HTML. Pure: data in,
//! strings out. Everything a lead supplied is escaped in HTML and stripped of
//! control characters (no CR/LF ever reaches a header).

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use crate::lead::ParsedMessage;
use crate::route::RoutingDecision;

/// A rendered notification (the recipient and headers are added by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Collapses control characters (CR, LF, tabs, NUL) to spaces: safe in a header.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Text for a header value from lead data: one line, and no literal
/// encoded-word (`=?utf-8?q?...?=`) that a mail client would decode into
/// something else (a CR LF and a fake "Bcc:" line, say).
pub fn header_text(s: &str) -> String {
    one_line(s).replace("=?", "= ?")
}

/// What a new-lead notification needs to know.
pub struct LeadNotice<'a> {
    pub lead_id: i64,
    pub lead: &'a ParsedMessage,
    pub decision: &'a RoutingDecision,
    /// The agent being notified (to say "forwarded by you").
    pub agent_id: &'a str,
    pub lead_url: Option<String>,
}

/// The email to an agent about a new lead: who, how to reach them, what
/// property, what they said, where it came from and why this agent.
pub fn new_lead(n: &LeadNotice<'_>) -> Rendered {
    let l = n.lead;
    let who = l
        .contact
        .name
        .as_deref()
        .or(l.contact.email.as_deref())
        .or(l.contact.phone.as_deref())
        .unwrap_or("someone");
    let mut subject = format!("New lead: {}", one_line(who));
    if let Some(addr) = &l.property.address {
        subject.push_str(&format!(" \u{2014} {}", one_line(addr)));
    }
    subject.push_str(&format!(" ({})", one_line(&l.source)));

    let why = if n.decision.user == n.agent_id && l.forwarded_by.is_some() {
        "forwarded by you".to_string()
    } else {
        n.decision.reason.clone()
    };
    let mut rows: Vec<(&str, String, Option<String>)> = Vec::new();
    if let Some(name) = &l.contact.name {
        rows.push(("Name", name.clone(), None));
    }
    if let Some(phone) = &l.contact.phone {
        rows.push(("Phone", phone.clone(), Some(format!("tel:{phone}"))));
    }
    if let Some(email) = &l.contact.email {
        rows.push(("Email", email.clone(), Some(format!("mailto:{email}"))));
    }
    if let Some(a) = &l.property.address {
        rows.push(("Property", a.clone(), None));
    }
    if let Some(m) = &l.property.mls_number {
        rows.push(("MLS", m.clone(), None));
    }
    if let Some(p) = l.property.price {
        rows.push(("Price", format!("${}", thousands(p)), None));
    }
    if let Some(u) = &l.property.url {
        rows.push(("Listing", u.clone(), Some(u.clone())));
    }
    rows.push(("Source", l.source.clone(), None));
    rows.push(("Why you", why, None));
    if let Some(url) = &n.lead_url {
        rows.push(("Open the lead", url.clone(), Some(url.clone())));
    }

    let mut text_body = format!("New lead #{} for you.\n\n", n.lead_id);
    for (label, value, _) in &rows {
        text_body.push_str(&format!("{label}: {}\n", one_line(value)));
    }
    if let Some(m) = &l.message {
        text_body.push_str(&format!("\nMessage:\n{m}\n"));
    }
    text_body.push_str("\nReply to this email to answer the lead directly.\n");

    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>New lead #{}</h2><table>",
        n.lead_id
    );
    for (label, value, link) in &rows {
        let cell = match link {
            Some(href) => format!("<a href=\"{}\">{}</a>", attr(href), text(value)),
            None => text(value).into_owned(),
        };
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{cell}</td></tr>"
        ));
    }
    html.push_str("</table>");
    if let Some(m) = &l.message {
        html.push_str(&format!(
            "<h3>Message</h3><p>{}</p>",
            text(m).replace('\n', "<br>")
        ));
    }
    html.push_str("<p>Reply to this email to answer the lead directly.</p></body></html>");
    Rendered {
        subject,
        text: text_body,
        html,
    }
}

/// What an offer email shows: enough to decide, nothing to contact the
/// person with (name, email and phone come with the confirmation).
pub struct OfferNotice<'a> {
    pub lead_id: i64,
    pub offer_id: i64,
    pub lead: &'a ParsedMessage,
    pub deadline: &'a str,
    pub period: &'a str,
    pub referral_fee_percent: u32,
    /// The accept/decline page, when the HTTP listener is configured.
    pub link: Option<String>,
}

pub fn offer(n: &OfferNotice<'_>) -> Rendered {
    let l = n.lead;
    let area = l.property.address.as_deref().map(area_of);
    let mut subject = format!("Lead offer: {} lead", one_line(&l.source));
    if let Some(a) = &area {
        subject.push_str(&format!(" in {}", one_line(a)));
    }
    subject.push_str(&format!(" \u{2014} accept within {}", n.period));
    let mut rows: Vec<(&str, String)> = vec![("Source", l.source.clone())];
    if let Some(t) = l.lead_type {
        rows.push(("Lead type", t.as_str().to_string()));
    }
    if let Some(a) = &l.property.address {
        rows.push(("Property", a.clone()));
    }
    if let Some(a) = &area {
        rows.push(("Area", a.clone()));
    }
    if let Some(m) = &l.property.mls_number {
        rows.push(("MLS", m.clone()));
    }
    if let Some(p) = l.property.price {
        rows.push(("Price", format!("${}", thousands(p))));
    }
    if n.referral_fee_percent > 0 {
        rows.push(("Referral fee", format!("{}%", n.referral_fee_percent)));
    }
    rows.push(("Accept by", n.deadline.to_string()));
    let cli = format!(
        "leadmail offers accept {} --by <you>  (or decline)",
        n.offer_id
    );
    let mut text_body = format!(
        "Lead #{} is offered to you. Accept it to become its owner and receive the full contact details.\n\n",
        n.lead_id
    );
    for (label, value) in &rows {
        text_body.push_str(&format!("{label}: {}\n", one_line(value)));
    }
    match &n.link {
        Some(link) => text_body.push_str(&format!("\nAccept or decline: {link}\n")),
        None => text_body.push_str(&format!("\nAccept or decline in the CRM: {cli}\n")),
    }
    let mut html = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\"><h2>Lead #{} is offered to you</h2><p>Accept it to become its owner and receive the full contact details.</p><table>",
        n.lead_id
    );
    for (label, value) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{}</td></tr>",
            text(value)
        ));
    }
    html.push_str("</table>");
    match &n.link {
        Some(link) => html.push_str(&format!(
            "<p><a href=\"{}\">Accept or decline this lead</a></p>",
            attr(link)
        )),
        None => html.push_str(&format!(
            "<p>Accept or decline in the CRM: <code>{}</code></p>",
            text(&cli)
        )),
    }
    html.push_str("</body></html>");
    Rendered {
        subject,
        text: text_body,
        html,
    }
}

/// To the other agents of an all-at-once offer: someone accepted first.
pub fn offer_taken(lead_id: i64, lead: &ParsedMessage) -> Rendered {
    let what = match lead.property.address.as_deref().map(area_of) {
        Some(a) => format!("{} lead in {}", one_line(&lead.source), one_line(&a)),
        None => format!("{} lead", one_line(&lead.source)),
    };
    let line =
        format!("Lead #{lead_id} ({what}) was accepted by another agent; the offer is closed.");
    Rendered {
        subject: format!("Offer closed: lead #{lead_id} was taken"),
        text: format!("{line}\n"),
        html: format!(
            "<!DOCTYPE html><html><body><p>{}</p></body></html>",
            text(&line)
        ),
    }
}

/// The area of an address: what follows the street ("Ann Arbor, MI 48103").
fn area_of(address: &str) -> String {
    match address.split_once(',') {
        Some((_, rest)) if !rest.trim().is_empty() => rest.trim().to_string(),
        _ => address.to_string(),
    }
}

/// A short note that someone asked again about their lead.
pub fn repeat_inquiry(lead_id: i64, lead: &ParsedMessage, lead_url: Option<String>) -> Rendered {
    let who = lead
        .contact
        .name
        .as_deref()
        .or(lead.contact.email.as_deref())
        .unwrap_or("A lead");
    let subject = format!("{} asked again (lead #{lead_id})", one_line(who));
    let mut body = format!(
        "{} asked again via {}.\n",
        one_line(who),
        one_line(&lead.source)
    );
    if let Some(m) = &lead.message {
        body.push_str(&format!("\nMessage:\n{m}\n"));
    }
    if let Some(u) = &lead_url {
        body.push_str(&format!("\nOpen the lead: {u}\n"));
    }
    let html = format!(
        "<!DOCTYPE html><html><body><p>{} asked again via {}.</p>{}{}</body></html>",
        text(&one_line(who)),
        text(&one_line(&lead.source)),
        lead.message
            .as_deref()
            .map(|m| format!("<p>{}</p>", text(m).replace('\n', "<br>")))
            .unwrap_or_default(),
        lead_url
            .map(|u| format!("<p><a href=\"{}\">Open the lead</a></p>", attr(&u)))
            .unwrap_or_default(),
    );
    Rendered {
        subject,
        text: body,
        html,
    }
}

/// The periodic digest of quarantined messages for a brokerage's admins.
/// Reasons only: no contact data from the messages themselves.
pub fn quarantine_digest(brokerage: &str, reasons: &[(i64, Option<String>)]) -> Rendered {
    let subject = format!(
        "{} message(s) quarantined for {}",
        reasons.len(),
        one_line(brokerage)
    );
    let mut body = "These messages could not be turned into leads and were kept in quarantine.\nSee `leadmail quarantine list`; after a fix, `leadmail quarantine replay --all`.\n\n".to_string();
    let mut html = String::from(
        "<!DOCTYPE html><html><body><p>These messages could not be turned into leads and were kept in quarantine.</p><ul>",
    );
    for (id, reason) in reasons {
        let reason = one_line(reason.as_deref().unwrap_or("unknown"));
        body.push_str(&format!("  #{id}: {reason}\n"));
        html.push_str(&format!("<li>#{id}: {}</li>", text(&reason)));
    }
    html.push_str("</ul></body></html>");
    Rendered {
        subject,
        text: body,
        html,
    }
}

/// `leadmail notify test`: proves the SMTP settings work.
pub fn test_message(agent_name: &str) -> Rendered {
    Rendered {
        subject: "leadmail test notification".to_string(),
        text: format!(
            "Hello {},\n\nThis is a test from leadmail: notifications reach you.\n",
            one_line(agent_name)
        ),
        html: format!(
            "<!DOCTYPE html><html><body><p>Hello {},</p><p>This is a test from leadmail: notifications reach you.</p></body></html>",
            text(&one_line(agent_name))
        ),
    }
}

fn thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead::{Contact, Envelope, Property, Verdict};
    use crate::route::{RouteKind, RoutingTrace, Step};

    #[test]
    fn header_text_is_one_line_without_encoded_words() {
        let evil = "Eve =?utf-8?q?=0D=0ABcc=3A_x=40y.example?=\r\nBcc: z@y.example";
        let h = header_text(evil);
        assert!(
            !h.contains('\n') && !h.contains('\r') && !h.contains("=?"),
            "{h}"
        );
        assert!(h.starts_with("Eve = ?utf-8?q?"));
    }

    fn decision() -> RoutingDecision {
        RoutingDecision {
            kind: RouteKind::General,
            owner: "jane".into(),
            user: "jane".into(),
            rule: Some("zillow".into()),
            reason: "rule \"zillow\": round robin".into(),
            unassigned: false,
            offer: None,
            delegated_from: None,
            trace: RoutingTrace {
                step: Step::GeneralRule,
                notes: vec![],
                rules: vec![],
                candidates: vec![],
                skipped: vec![],
                cursor: None,
            },
        }
    }

    fn lead(name: &str, message: &str) -> ParsedMessage {
        ParsedMessage {
            verdict: Verdict::Lead,
            reason: None,
            source: "realtor.com".into(),
            lead_type: None,
            contact: Contact {
                name: Some(name.into()),
                email: Some("victor@example.com".into()),
                phone: Some("+15550104127".into()),
            },
            property: Property {
                address: Some("731 Mulberry St".into()),
                price: Some(425_000),
                ..Property::default()
            },
            message: Some(message.into()),
            forwarded_by: None,
            agent_hint: None,
            message_id: None,
            subject: None,
            envelope: Envelope::default(),
        }
    }

    #[test]
    fn subject_names_lead_property_and_source() {
        let l = lead("Victor Almeida", "hi");
        let d = decision();
        let r = new_lead(&LeadNotice {
            lead_id: 7,
            lead: &l,
            decision: &d,
            agent_id: "jane",
            lead_url: None,
        });
        assert_eq!(
            r.subject,
            "New lead: Victor Almeida \u{2014} 731 Mulberry St (realtor.com)"
        );
        assert!(r.text.contains("Phone: +15550104127"));
        assert!(r.text.contains("Price: $425,000"));
        assert!(r.html.contains("href=\"tel:+15550104127\""));
        assert!(r.html.contains("href=\"mailto:victor@example.com\""));
        assert!(r.text.contains("round robin"));
    }

    #[test]
    fn lead_text_is_escaped_and_never_breaks_a_header() {
        let l = lead(
            "Eve\r\nBcc: victim@example.com <script>",
            "<img src=x onerror=alert(1)>",
        );
        let d = decision();
        let r = new_lead(&LeadNotice {
            lead_id: 1,
            lead: &l,
            decision: &d,
            agent_id: "jane",
            lead_url: None,
        });
        assert!(!r.subject.contains('\r') && !r.subject.contains('\n'));
        assert!(!r.html.contains("<script>") && !r.html.contains("<img"));
        assert!(r.html.contains("&lt;script&gt;") && r.html.contains("&lt;img"));
    }
}
