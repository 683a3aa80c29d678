//! Parse: raw message bytes in, a [`ParsedMessage`] out. Pure: no I/O, no
//! configuration beyond [`ParseOptions`], never panics, never fails — what
//! cannot be understood is reported on the result (`verdict`, `reason`).
//!
//! Inside the stage: MIME decoding ([`mime`]) -> non-lead checks
//! ([`classify`]) -> forward unwrapping ([`forward`]) -> extractors, each
//! returning an [`extracted::Extracted`]: Lead Metadata ([`metadata`]), ADF
//! ([`adf`]), the source's own parser ([`sources`]) and the generic scanner
//! ([`generic`], built on [`fields`]) -> merged field by field in that order
//! of precedence. Values are normalized by [`normalize`].

pub mod adf;
pub mod classify;
pub mod extracted;
pub mod fields;
pub mod forward;
pub mod generic;
pub mod metadata;
pub mod mime;
pub mod normalize;
pub mod sources;

use crate::lead::{AgentHint, Contact, Envelope, ParsedMessage, Property, Verdict};
use extracted::Context;
use mime::Mail;

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

/// Parses one raw message. Never panics: a panic anywhere below (the MIME
/// parser has `debug_assert`s that fire on some malformed input, and any
/// dependency may have a bug) is contained and reported as unparseable, so
/// the message is quarantined and kept for replay, and the inbox goes on.
pub fn parse(raw: &[u8], opts: &ParseOptions) -> ParsedMessage {
    match std::panic::catch_unwind(|| parse_unguarded(raw, opts)) {
        Ok(parsed) => parsed,
        Err(_) => {
            tracing::warn!(message = "The parser failed on a message; it is quarantined.");
            empty(
                Verdict::Unparseable,
                "malformed message: the parser could not read it",
                None,
                Envelope::default(),
            )
        }
    }
}

fn parse_unguarded(raw: &[u8], opts: &ParseOptions) -> ParsedMessage {
    let Some(mail) = Mail::parse(raw) else {
        return empty(
            Verdict::Unparseable,
            "not an email message",
            None,
            Envelope::default(),
        );
    };
    let mut envelope = Envelope {
        from: mail.from.as_ref().and_then(|f| f.email.clone()),
        recipients: mail.recipients.clone(),
        link_hosts: Vec::new(),
        authentication_results: mail
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("Authentication-Results"))
            .map(|(_, v)| v.trim().to_string())
            .collect(),
    };
    let non_lead = classify::classify(&mail);
    if let Some(kind) = non_lead.filter(|k| !k.yields_to_lead_data()) {
        return empty(Verdict::Ignored, kind.reason(), Some(&mail), envelope);
    }

    let forwarded = forward::unwrap(&mail);
    let forwarded_by = forwarded
        .as_ref()
        .and(mail.from.as_ref())
        .and_then(|f| f.email.clone());
    // Addresses that are never the lead's: whoever the message was sent to,
    // and the forwarding agent.
    let mut decoys: Vec<String> = mail.recipients.clone();
    decoys.extend(forwarded_by.clone());
    let xml = mail.xml_documents();
    let ctx = match &forwarded {
        Some(f) => Context {
            from: f.from.as_ref(),
            reply_to: f.reply_to.as_ref(),
            subject: f.subject.as_deref().or(mail.subject.as_deref()),
            text: &f.text,
            html: f.html.as_deref().or(mail.html.as_deref()),
            xml: &xml,
            decoys: &decoys,
            options: opts,
        },
        None => Context {
            from: mail.from.as_ref(),
            reply_to: mail.reply_to.as_ref(),
            subject: mail.subject.as_deref(),
            text: &mail.text,
            html: mail.html.as_deref(),
            xml: &xml,
            decoys: &decoys,
            options: opts,
        },
    };

    envelope.link_hosts = link_hosts(&ctx);
    let source_parser = sources::find(&ctx);
    let metadata = metadata::extract(ctx.html, opts);
    let adf = adf::extract(
        std::iter::once(ctx.text).chain(xml.iter().map(String::as_str)),
        opts,
    );
    let from_source = source_parser.map(|p| p.extract(&ctx)).unwrap_or_default();
    let sender = generic::SenderKind {
        known_source: source_parser.is_some(),
        automated: non_lead.is_some(),
    };
    let generic = generic::extract(&ctx, sender);
    let mut found = metadata.or(adf).or(from_source).or(generic);
    // A plain-text part can be a stub ("view this message in a browser")
    // while the HTML part holds the lead: read the HTML too before giving up.
    if found.email.is_none()
        && found.phone.is_none()
        && let Some(html) = ctx.html
    {
        let rendered = mime::html_to_text(html);
        if rendered.trim() != ctx.text.trim() {
            let from_html = generic::extract(
                &Context {
                    text: &rendered,
                    ..ctx
                },
                sender,
            );
            found = found.or(from_html);
        }
    }

    let source = found
        .source
        .clone()
        .or_else(|| source_parser.map(|p| p.name().to_string()))
        .or_else(|| sources::source_from_names(&ctx).map(str::to_string))
        .unwrap_or_else(|| sources::GENERIC.to_string());
    let agent_hint =
        (found.agent_name.is_some() || found.agent_email.is_some()).then(|| AgentHint {
            name: found.agent_name.clone(),
            email: found.agent_email.clone(),
        });
    // The agent a lead names is never the lead.
    let email = found
        .email
        .filter(|e| found.agent_email.as_ref() != Some(e) && !decoys.contains(e));
    let contact = Contact {
        name: found.name,
        email,
        phone: found.phone,
    };
    let (verdict, reason) = if contact.is_reachable() {
        (Verdict::Lead, None)
    } else if let Some(kind) = non_lead {
        (Verdict::Ignored, Some(kind.reason().to_string()))
    } else {
        (Verdict::Unparseable, Some("no contact data".to_string()))
    };
    ParsedMessage {
        verdict,
        reason,
        source,
        lead_type: found.lead_type,
        contact,
        property: Property {
            address: found.address,
            mls_number: found.mls_number,
            price: found.price,
            url: found.url,
        },
        message: found.message.map(|m| generic::clean_message(&m)),
        forwarded_by,
        agent_hint,
        message_id: mail.message_id.clone(),
        subject: mail.subject.clone(),
        envelope,
    }
}

/// Distinct host names of the links in the lead's text and HTML, at most 50.
fn link_hosts(ctx: &Context<'_>) -> Vec<String> {
    let text_links = fields::find_urls(ctx.text).into_iter().map(str::to_string);
    let html_links = ctx.html.map(fields::html_links).unwrap_or_default();
    let mut hosts: Vec<String> = Vec::new();
    for link in text_links.chain(html_links) {
        if !link.to_ascii_lowercase().starts_with("http") {
            continue;
        }
        let host = crate::config::website_domain(&link);
        if !host.is_empty() && !hosts.contains(&host) {
            hosts.push(host);
            if hosts.len() == 50 {
                break;
            }
        }
    }
    hosts
}

/// A result with no lead data: a non-lead, or input that is not a message.
fn empty(verdict: Verdict, reason: &str, mail: Option<&Mail>, envelope: Envelope) -> ParsedMessage {
    ParsedMessage {
        verdict,
        reason: Some(reason.to_string()),
        source: sources::GENERIC.to_string(),
        lead_type: None,
        contact: Contact::default(),
        property: Property::default(),
        message: None,
        forwarded_by: None,
        agent_hint: None,
        message_id: mail.and_then(|m| m.message_id.clone()),
        subject: mail.and_then(|m| m.subject.clone()),
        envelope,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_unparseable_not_a_panic() {
        let p = parse(b"", &ParseOptions::default());
        assert_eq!(p.verdict, Verdict::Unparseable);
        let p = parse(&[0xff, 0x00, 0x13, b'\n', b'\n'], &ParseOptions::default());
        assert_ne!(p.verdict, Verdict::Lead);
    }
}
