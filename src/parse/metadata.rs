//! Real Estate Lead Metadata Spec 1.0: `<meta name="lead_*" content="...">`
//! tags (Realtor.com, Opcity, StreetEasy, Follow Up Boss). When present, they
//! are the sender's own statement of the lead and win over scraped text.
//!
//! Tags may sit in `<head>` or `<body>`, with either attribute order and any
//! quoting; contents are entity-decoded.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::extracted::Extracted;
use super::{ParseOptions, normalize};
use crate::lead::LeadType;

static META_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?is)<meta\b([^>]*)>").expect("static regex"));

static ATTRIBUTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?is)([a-z][a-z0-9_:\-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>/]+))"#)
        .expect("static regex")
});

/// Every `lead_*` tag as (lower-cased name, decoded content), in order.
pub fn tags(html: &str) -> Vec<(String, String)> {
    META_TAG
        .captures_iter(html)
        .filter_map(|tag| {
            let mut attrs: HashMap<String, String> = HashMap::new();
            for a in ATTRIBUTE.captures_iter(&tag[1]) {
                let value = a
                    .get(2)
                    .or(a.get(3))
                    .or(a.get(4))
                    .map_or("", |m| m.as_str());
                attrs.insert(a[1].to_ascii_lowercase(), value.to_string());
            }
            let name = attrs.get("name")?.trim().to_ascii_lowercase();
            if !name.starts_with("lead_") {
                return None;
            }
            let content = attrs.get("content").map(String::as_str).unwrap_or("");
            let content = html_escape::decode_html_entities(content)
                .trim()
                .to_string();
            Some((name, content))
        })
        .collect()
}

/// `lead_source` as our source name; an unknown source is kept, lower-cased.
fn source_name(raw: &str) -> String {
    super::sources::known_name(raw)
        .map(str::to_string)
        .unwrap_or_else(|| raw.trim().to_ascii_lowercase())
}

/// Extracts the lead from the metadata tags; empty when the document has none.
pub fn extract(html: Option<&str>, options: &ParseOptions) -> Extracted {
    let Some(html) = html else {
        return Extracted::default();
    };
    let tags = tags(html);
    if tags.is_empty() {
        return Extracted::default();
    }
    let get = |name: &str| {
        tags.iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let street = get("lead_property_address");
    let city = get("lead_property_city");
    let state_zip = [get("lead_property_state"), get("lead_property_zip")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let address = {
        let parts: Vec<&str> = [street, city, Some(state_zip.as_str())]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        // Avoid repeating a city that the street line already carries.
        match street {
            Some(s) if parts.len() > 1 && city.is_some_and(|c| s.contains(c)) => {
                Some(s.to_string())
            }
            _ => normalize::address(&parts.join("\n")),
        }
    };
    let is_lead_metadata = get("lead_information_version").is_some()
        || get("lead_name").is_some()
        || get("lead_email").is_some()
        || get("lead_phone").is_some();
    Extracted {
        source: get("lead_source").map(source_name),
        // The spec's default type is Buyer.
        lead_type: get("lead_type")
            .and_then(LeadType::parse)
            .or(is_lead_metadata.then_some(LeadType::Buyer)),
        name: get("lead_name").and_then(normalize::name),
        email: get("lead_email").and_then(|e| super::fields::find_emails(e).into_iter().next()),
        phone: get("lead_phone").and_then(|p| normalize::phone(p, options.default_region)),
        address,
        mls_number: get("lead_mls").and_then(normalize::mls_number),
        price: get("lead_max_price")
            .or(get("lead_price"))
            .and_then(normalize::price),
        url: get("lead_property_url").map(str::to_string),
        message: get("lead_message").map(str::to_string),
        agent_name: get("lead_assigned_agent").and_then(normalize::name),
        agent_email: get("lead_assigned_agent_email")
            .and_then(|e| super::fields::find_emails(e).into_iter().next()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tags_in_any_attribute_order_and_quoting() {
        let html = r#"<html><head>
            <meta name="lead_information_version" content="1.0">
            <meta content='Jane &amp; John Roe' name='lead_name'>
            <META NAME=lead_email CONTENT=jroe@example.com>
            <meta name="lead_phone" content="(555) 010-2233" />
            <meta name="lead_property_address" content="12 Oak St">
            <meta name="lead_property_city" content="Ann Arbor">
            <meta name="lead_property_state" content="MI">
            <meta name="lead_property_zip" content="48103">
            <meta name="lead_source" content="Realtor.com">
            </head><body><meta name="lead_mls" content="MLS 2212"></body></html>"#;
        let e = extract(Some(html), &ParseOptions::default());
        assert_eq!(e.name.as_deref(), Some("Jane & John Roe"));
        assert_eq!(e.email.as_deref(), Some("jroe@example.com"));
        assert_eq!(e.phone.as_deref(), Some("+15550102233"));
        assert_eq!(e.address.as_deref(), Some("12 Oak St, Ann Arbor, MI 48103"));
        assert_eq!(e.mls_number.as_deref(), Some("2212"));
        assert_eq!(e.source.as_deref(), Some("realtor.com"));
        assert_eq!(e.lead_type, Some(LeadType::Buyer), "the spec's default");
    }

    #[test]
    fn other_meta_tags_are_not_metadata() {
        let html = r#"<meta name="viewport" content="width=device-width"><meta charset="utf-8">"#;
        assert_eq!(
            extract(Some(html), &ParseOptions::default()),
            Extracted::default()
        );
    }
}
