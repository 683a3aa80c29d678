//! Parse: raw message bytes in, a [`ParsedMessage`] out. Pure: no I/O, no
//! configuration beyond [`ParseOptions`], never panics, never fails — what
//! cannot be understood is reported on the result (`verdict`, `reason`).
//!
//! Pipeline inside the stage: MIME decoding ([`mime`]) -> non-lead checks
//! ([`classify`]) -> forward unwrapping ([`forward`]) -> source detection
//! ([`sources`]) -> field extraction ([`fields`]) -> normalization
//! ([`normalize`]).

pub mod classify;
pub mod fields;
pub mod forward;
pub mod mime;
pub mod normalize;
pub mod sources;

use std::sync::LazyLock;

use regex::Regex;

use crate::lead::{AgentHint, Contact, Envelope, LeadType, ParsedMessage, Property, Verdict};
use fields::{Field, Labeled};
use mime::{Mail, Mailbox};

pub use classify::NOTIFICATION_HEADER;

/// The few settings parsing depends on.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Region for phone numbers written without a country code.
    pub default_region: phonenumber::country::Id,
}

impl ParseOptions {
    /// Options from the `[parse]` configuration (validated at load time; an
    /// unknown region there falls back to the default rather than failing here).
    pub fn from_config(c: &crate::config::ParseConfig) -> ParseOptions {
        ParseOptions {
            default_region: c
                .default_region
                .parse()
                .unwrap_or(phonenumber::country::Id::US),
        }
    }
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            default_region: phonenumber::country::Id::US,
        }
    }
}

/// The part of a message that carries the lead: the whole message, or the
/// forwarded original inside it.
struct LeadBody<'a> {
    from: Option<&'a Mailbox>,
    subject: Option<&'a str>,
    reply_to: Option<&'a Mailbox>,
    text: &'a str,
    html: Option<&'a str>,
}

/// Parses one raw message.
pub fn parse(raw: &[u8], opts: &ParseOptions) -> ParsedMessage {
    let Some(mail) = Mail::parse(raw) else {
        return ParsedMessage {
            verdict: Verdict::Unparseable,
            reason: Some("not an email message".to_string()),
            source: sources::GENERIC.to_string(),
            lead_type: None,
            contact: Contact::default(),
            property: Property::default(),
            message: None,
            forwarded_by: None,
            agent_hint: None,
            message_id: None,
            subject: None,
            envelope: Envelope::default(),
        };
    };
    let envelope = Envelope {
        from: mail.from.as_ref().and_then(|f| f.email.clone()),
        recipients: mail.recipients.clone(),
    };
    let non_lead = classify::classify(&mail);
    let mut parsed = ParsedMessage {
        verdict: Verdict::Unparseable,
        reason: None,
        source: sources::GENERIC.to_string(),
        lead_type: None,
        contact: Contact::default(),
        property: Property::default(),
        message: None,
        forwarded_by: None,
        agent_hint: None,
        message_id: mail.message_id.clone(),
        subject: mail.subject.clone(),
        envelope,
    };
    if let Some(kind) = non_lead.filter(|k| !k.yields_to_lead_data()) {
        parsed.verdict = Verdict::Ignored;
        parsed.reason = Some(kind.reason().to_string());
        return parsed;
    }

    let forwarded = forward::unwrap(&mail);
    let body = match &forwarded {
        Some(f) => LeadBody {
            from: f.from.as_ref(),
            subject: f.subject.as_deref().or(mail.subject.as_deref()),
            reply_to: f.reply_to.as_ref(),
            text: &f.text,
            html: f.html.as_deref(),
        },
        None => LeadBody {
            from: mail.from.as_ref(),
            subject: mail.subject.as_deref(),
            reply_to: mail.reply_to.as_ref(),
            text: &mail.text,
            html: mail.html.as_deref(),
        },
    };
    if forwarded.is_some() {
        parsed.forwarded_by = mail.from.as_ref().and_then(|f| f.email.clone());
    }
    // Addresses that are never the lead's: whoever the message was sent to,
    // and the forwarding agent.
    let mut decoys: Vec<String> = mail.recipients.clone();
    decoys.extend(parsed.forwarded_by.clone());

    parsed.source =
        sources::detect(body.from.and_then(|f| f.email.as_deref()), body.subject).to_string();
    extract(&body, &decoys, opts, &mut parsed);

    if parsed.contact.is_reachable() {
        parsed.verdict = Verdict::Lead;
    } else if let Some(kind) = non_lead {
        parsed.verdict = Verdict::Ignored;
        parsed.reason = Some(kind.reason().to_string());
    } else {
        parsed.verdict = Verdict::Unparseable;
        parsed.reason = Some("no contact data".to_string());
    }
    parsed
}

/// Local parts that mark an address as a system sender, never a person.
fn is_system_address(addr: &str) -> bool {
    let (local, domain) = addr.split_once('@').unwrap_or((addr, ""));
    let local = local.to_ascii_lowercase();
    let system = [
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
        "do_not_reply",
        "mailer-daemon",
        "postmaster",
        "notifications",
        "notification",
        "notify",
        "alerts",
        "support",
        "leads",
        "lead",
        "info",
        "bounce",
        "bounces",
        "wordpress",
        "webmaster",
    ];
    system
        .iter()
        .any(|s| local == *s || local.starts_with(&format!("{s}+")))
        || local.starts_with("noreply")
        || local.starts_with("no-reply")
        || sources::is_source_domain(domain) && !domain.starts_with("convo.")
}

/// Fills contact, property, message and hints on `parsed` from `body`.
fn extract(
    body: &LeadBody<'_>,
    decoys: &[String],
    opts: &ParseOptions,
    parsed: &mut ParsedMessage,
) {
    let labels = fields::scan_labels(body.text);
    let label = |f: Field| fields::first(&labels, f);
    let acceptable = |addr: &str| !decoys.iter().any(|d| d == addr) && !is_system_address(addr);

    // A sender who is a person (not a portal, form mailer or the forwarder) is the lead.
    let personal_sender = body
        .from
        .filter(|f| f.email.as_deref().is_some_and(acceptable));
    let personal_reply_to = body
        .reply_to
        .filter(|f| f.email.as_deref().is_some_and(acceptable));

    let email = label(Field::Email)
        .and_then(|v| fields::find_emails(v).into_iter().find(|e| acceptable(e)))
        .or_else(|| personal_reply_to.and_then(|m| m.email.clone()))
        .or_else(|| personal_sender.and_then(|m| m.email.clone()))
        .or_else(|| {
            fields::find_emails(body.text)
                .into_iter()
                .find(|e| acceptable(e) && !in_unsubscribe_context(body.text, e))
        });

    let name = label(Field::Name)
        .and_then(normalize::name)
        .or_else(|| normalize::full_name(label(Field::FirstName), label(Field::LastName)))
        .or_else(|| {
            // The display name belongs to the lead only when the address is theirs.
            [personal_reply_to, personal_sender]
                .into_iter()
                .flatten()
                .find(|m| m.email.is_some() && m.email == email)
                .and_then(|m| m.name.as_deref())
                .and_then(normalize::name)
        });

    let phone = phone_from_labels(&labels, opts)
        .or_else(|| phone_from_links(body.html, opts))
        .or_else(|| {
            fields::find_phone_candidates(body.text)
                .into_iter()
                .find_map(|c| normalize::phone(c, opts.default_region))
        });

    parsed.contact = Contact { name, email, phone };

    let street = label(Field::Address).and_then(normalize::address);
    let locality = [label(Field::City), label(Field::State), label(Field::Zip)]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let address = match (street, locality.is_empty()) {
        (Some(s), false) if !s.contains(&locality) => Some(format!("{s}, {locality}")),
        (s, _) => s,
    }
    .or_else(|| body.subject.and_then(street_address_in));
    parsed.property = Property {
        address,
        mls_number: label(Field::Mls)
            .and_then(normalize::mls_number)
            .or_else(|| mls_in_text(body.text)),
        price: label(Field::Price).and_then(normalize::price),
        url: label(Field::Url).and_then(|v| fields::find_urls(v).first().map(|u| u.to_string())),
    };
    // A person writing in their own words: the body is the message.
    parsed.message = label(Field::Message)
        .map(str::to_string)
        .or_else(|| {
            let wrote_it_themselves = parsed.source == sources::GENERIC
                && personal_sender.is_some_and(|s| s.email == parsed.contact.email);
            wrote_it_themselves.then(|| without_signature(body.text))
        })
        .map(|m| clean_message(&m))
        .filter(|m| !m.is_empty());
    parsed.lead_type = label(Field::LeadType).and_then(LeadType::parse);

    let agent_name = label(Field::AgentName).and_then(|v| {
        let v = v.split(['<', '[', '(']).next().unwrap_or(v);
        normalize::name(v)
    });
    let agent_email = label(Field::AgentEmail)
        .or(label(Field::AgentName))
        .and_then(|v| fields::find_emails(v).into_iter().next());
    if agent_name.is_some() || agent_email.is_some() {
        parsed.agent_hint = Some(AgentHint {
            name: agent_name,
            email: agent_email,
        });
    }
    // The agent a lead names is never the lead.
    if let Some(hint) = &parsed.agent_hint
        && hint.email.is_some()
        && parsed.contact.email == hint.email
    {
        parsed.contact.email = None;
    }
}

/// Trims a message and the quotes portals wrap around it.
fn clean_message(m: &str) -> String {
    let t = m.trim();
    let unquoted = t
        .strip_prefix(['"', '\u{201c}'])
        .and_then(|r| r.strip_suffix(['"', '\u{201d}']))
        .unwrap_or(t);
    unquoted.trim().to_string()
}

/// The text above the conventional "-- " signature separator.
fn without_signature(text: &str) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_end() == "--" {
            break;
        }
        out.push(line);
    }
    out.join("\n")
}

static STREET_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)\b\d{1,6}\s+(?:[NSEW]\.?\s+)?(?:[A-Z0-9][A-Za-z0-9.'\-]*\s+){1,4}?
          (?:St|Street|Ave|Avenue|Rd|Road|Ln|Lane|Dr|Drive|Ct|Court|Blvd|Boulevard|Way|Pl|Place
            |Ter|Terrace|Cir|Circle|Pkwy|Parkway|Hwy|Highway|Trl|Trail|Loop|Sq|Square)\b\.?
          (?:,\s*[A-Z][A-Za-z .]+,\s*[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?)?",
    )
    .expect("static regex")
});

/// A street address written in a line of text ("Question about 19 Elm St").
fn street_address_in(text: &str) -> Option<String> {
    STREET_ADDRESS.find(text).map(|m| m.as_str().to_string())
}

fn phone_from_labels(labels: &[Labeled], opts: &ParseOptions) -> Option<String> {
    labels
        .iter()
        .filter(|l| l.field == Field::Phone)
        .find_map(|l| normalize::phone(&l.value, opts.default_region))
}

/// Phones in `tel:`/`sms:` links, or in a `phone=` query parameter.
fn phone_from_links(html: Option<&str>, opts: &ParseOptions) -> Option<String> {
    fields::html_links(html?).into_iter().find_map(|link| {
        let lower = link.to_ascii_lowercase();
        let candidate =
            if let Some(rest) = lower.strip_prefix("tel:").or(lower.strip_prefix("sms:")) {
                rest.split(['?', ';']).next().map(str::to_string)
            } else {
                link.split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("phone="))
                    .map(percent_decode)
            }?;
        normalize::phone(&candidate, opts.default_region)
    })
}

/// Decodes `%XX` escapes and `+` as space; invalid escapes are kept as written.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn in_unsubscribe_context(text: &str, email: &str) -> bool {
    text.lines()
        .filter(|l| l.to_ascii_lowercase().contains(email))
        .any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("unsubscribe") || l.contains("opt out") || l.contains("opt-out")
        })
}

static MLS_IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\bMLS\s*(?:ID|number|no\.?)?\s*#?\s*:?\s*#?\s*([A-Z]{0,4}-?\d[A-Z0-9\-]{3,})")
        .expect("static regex")
});

fn mls_in_text(text: &str) -> Option<String> {
    MLS_IN_TEXT
        .captures(text)
        .map(|c| c[1].trim_end_matches('-').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%28555%29%20010-4477"), "(555) 010-4477");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn garbage_is_unparseable_not_a_panic() {
        let p = parse(b"", &ParseOptions::default());
        assert_eq!(p.verdict, Verdict::Unparseable);
        let p = parse(&[0xff, 0x00, 0x13, b'\n', b'\n'], &ParseOptions::default());
        assert_ne!(p.verdict, Verdict::Lead);
    }

    #[test]
    fn mls_in_free_text() {
        assert_eq!(mls_in_text("MLSID # 12345678").as_deref(), Some("12345678"));
        assert_eq!(
            mls_in_text("see MLS: AB-123456 now").as_deref(),
            Some("AB-123456")
        );
        assert_eq!(mls_in_text("no number here"), None);
    }
}
