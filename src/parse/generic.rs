//! The generic extractor: labelled fields ("Email:", "Phone#:", label above
//! value, table cells), free-text emails and phones, `tel:`/`sms:` links and
//! `phone=` query parameters, a street address in the subject, and a person's
//! own email body as their message. It reads every message; source parsers
//! and metadata take precedence where they have a value.

use std::sync::LazyLock;

use regex::Regex;

use super::extracted::{Context, Extracted};
use super::fields::{self, Field, Labeled};
use super::{ParseOptions, forward, normalize, sources};
use crate::lead::LeadType;

/// Local parts that mark an address as a system sender, never a person.
pub fn is_system_address(addr: &str) -> bool {
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
        "forms",
        "form",
        "website",
        "mailer",
        "system",
        "automated",
        "robot",
        "zapier",
        "alert",
        "updates",
        "newsletter",
        "marketing",
        "listings",
    ];
    system.iter().any(|s| {
        local == *s
            || local
                .strip_prefix(s)
                .is_some_and(|rest| rest.starts_with('+'))
    }) || local.starts_with("noreply")
        || local.starts_with("no-reply")
        || sources::is_source_domain(domain) && !domain.starts_with("convo.")
}

/// What the caller knows about who sent the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct SenderKind {
    /// A source parser claimed the message: the sender is a portal or system.
    pub known_source: bool,
    /// The message calls itself automated or bulk: its sender is not the lead.
    pub automated: bool,
}

/// Reads a lead from labelled fields and free text, whatever sent it.
pub fn extract(ctx: &Context<'_>, sender: SenderKind) -> Extracted {
    let opts = ctx.options;
    let decoys = ctx.decoys;
    // Quoted reply history is an earlier conversation, never this lead's data.
    let text = forward::without_reply_history(ctx.text);
    let body = Context { text, ..*ctx };
    let body = &body;
    let labels = fields::scan_labels(text);
    let label = |f: Field| fields::first(&labels, f);
    let acceptable = |addr: &str| !decoys.iter().any(|d| d == addr) && !is_system_address(addr);

    // The sender is the lead when they are a person (not a portal, a form
    // mailer or the forwarder) writing in their own words: a body that names
    // someone else ("Name:", another address) was written by a system.
    let sender_email = body.from.and_then(|f| f.email.as_deref());
    let names_someone_else = labels.iter().any(|l| {
        matches!(
            l.field,
            Field::Name | Field::FirstName | Field::LastName | Field::Email
        )
    }) || fields::find_emails(text)
        .iter()
        .any(|e| acceptable(e) && Some(e.as_str()) != sender_email);
    let personal_sender = body
        .from
        .filter(|f| f.email.as_deref().is_some_and(acceptable))
        .filter(|_| !sender.automated && !names_someone_else);
    // Form mailers put the person's address in Reply-To.
    let personal_reply_to = body
        .reply_to
        .filter(|f| f.email.as_deref().is_some_and(acceptable))
        .filter(|_| !sender.automated);

    let email = label(Field::Email)
        .and_then(|v| fields::find_emails(v).into_iter().find(|e| acceptable(e)))
        .or_else(|| personal_reply_to.and_then(|m| m.email.clone()))
        .or_else(|| personal_sender.and_then(|m| m.email.clone()))
        .or_else(|| {
            fields::find_emails(body.text)
                .into_iter()
                .find(|e| acceptable(e) && !in_decoy_context(body.text, e))
        });

    let name = label(Field::Name)
        .and_then(name_in_value)
        .or_else(|| normalize::full_name(label(Field::FirstName), label(Field::LastName)))
        .or_else(|| {
            // The display name belongs to the lead only when the address is theirs.
            [personal_reply_to, personal_sender]
                .into_iter()
                .flatten()
                .find(|m| m.email.is_some() && m.email == email)
                .and_then(|m| m.name.as_deref())
                .and_then(normalize::name)
        })
        .or_else(|| fields::speaker(body.text).and_then(normalize::name))
        .or_else(|| {
            email
                .as_deref()
                .and_then(|e| name_beside_email(body.text, e))
        })
        .or_else(|| body.subject.and_then(name_in_subject));

    let phone = phone_from_labels(&labels, opts)
        .or_else(|| phone_from_links(body.html, opts))
        .or_else(|| phone_in_text(body.text, opts));

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
    .or_else(|| body.subject.and_then(street_address_in))
    .or_else(|| address_of_interest(body.text));
    let mls_number = label(Field::Mls)
        .and_then(normalize::mls_number)
        .or_else(|| mls_in_text(body.text));
    let price = label(Field::Price).and_then(normalize::price);
    let url = label(Field::Url)
        .and_then(|v| fields::find_urls(v).first().map(|u| u.to_string()))
        .or_else(|| listing_url(text, body.html));
    // A person writing in their own words: the body is the message.
    let message = label(Field::Message)
        .map(str::to_string)
        .or_else(|| {
            let wrote_it_themselves =
                !sender.known_source && personal_sender.is_some_and(|s| s.email == email);
            wrote_it_themselves.then(|| without_signature(body.text))
        })
        .map(|m| clean_message(&m))
        .filter(|m| !m.is_empty());
    let lead_type = label(Field::LeadType)
        .and_then(LeadType::parse)
        .or_else(|| body.subject.and_then(lead_type_in_subject));

    let agent_name = label(Field::AgentName).and_then(|v| {
        let v = v.split(['<', '[', '(']).next().unwrap_or(v);
        normalize::name(v)
    });
    let agent_email = label(Field::AgentEmail)
        .or(label(Field::AgentName))
        .and_then(|v| fields::find_emails(v).into_iter().next());
    Extracted {
        source: label(Field::Source)
            .and_then(sources::known_name)
            .map(str::to_string),
        lead_type,
        name,
        email,
        phone,
        address,
        mls_number,
        price,
        url,
        message,
        agent_name,
        agent_email,
    }
}

/// Words on a line that mark its phone numbers and addresses as someone
/// else's: the portal, the listing office, an agent, the unsubscribe footer.
const DECOY_WORDS: &[&str] = &[
    "unsubscribe",
    "opt out",
    "opt-out",
    "support",
    "customer service",
    "call us",
    "contact us",
    "questions?",
    "office",
    "fax",
    "listed by",
    "listing agent",
    "listing courtesy",
    "brokered by",
    "agent:",
    "broker",
    "toll free",
    "toll-free",
    "privacy",
    "copyright",
    "\u{a9}",
    "help center",
    "agent phone",
    "agent cell",
    "agent email",
    "agent line",
    "agent direct",
];

fn is_decoy_line(line: &str) -> bool {
    let lower = line.to_lowercase();
    DECOY_WORDS.iter().any(|w| lower.contains(w))
}

/// Whether every line that mentions `needle` is a decoy line.
fn in_decoy_context(text: &str, needle: &str) -> bool {
    let mut mentioned = text
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains(needle))
        .peekable();
    mentioned.peek().is_some() && mentioned.all(is_decoy_line)
}

/// The first valid phone number in the text outside decoy lines; toll-free
/// numbers are businesses, not people.
fn phone_in_text(text: &str, opts: &ParseOptions) -> Option<String> {
    text.lines()
        .filter(|l| !is_decoy_line(l))
        .flat_map(fields::find_phone_candidates)
        .filter_map(|c| normalize::phone(c, opts.default_region))
        .find(|p| !is_toll_free(p))
}

fn is_toll_free(e164: &str) -> bool {
    ["800", "888", "877", "866", "855", "844", "833"]
        .iter()
        .any(|code| e164.strip_prefix("+1").is_some_and(|n| n.starts_with(code)))
}

static NAME_BEFORE_PAREN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\p{Lu}[\p{L}'\-]+(?:\s+\p{Lu}[\p{L}'.\-]*){1,3})\s*[(<\[]\s*(?:mailto:)?$")
        .expect("static regex")
});

static NAME_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\p{Lu}[\p{L}'\-]+(?:\s+\p{Lu}[\p{L}'.\-]*){1,3}$").expect("static regex")
});

/// A name written right before the email, inline ("Jane Roe (jane@...") or on
/// the bare line above it (contact blocks of listing alerts and sign-in apps).
fn name_beside_email(text: &str, email: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| l.to_ascii_lowercase().contains(email))?;
    let line = lines[at];
    let pos = line.to_ascii_lowercase().find(email)?;
    if let Some(c) = line
        .get(..pos)
        .and_then(|head| NAME_BEFORE_PAREN.captures(head))
    {
        return normalize::name(&c[1]);
    }
    if line.len() <= email.len() + 2 {
        let above = lines[..at].iter().rev().find(|l| !l.is_empty())?;
        if NAME_LINE.is_match(above) {
            return normalize::name(above);
        }
    }
    None
}

static SUBJECT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:(?:re|fwd?|fw):\s*)*(?:new\s+)?(?:[\w.]+\s+)?(?:lead|inquiry|contact|request|message)\s*(?:from\s+|[:\-\u{2013}]\s*(?:from\s+)?)([\p{L}][\p{L}.' \-]{1,60})$",
    )
    .expect("static regex")
});

/// "New Lead: Samantha Ortiz", "Website inquiry - Ann Lee".
fn name_in_subject(subject: &str) -> Option<String> {
    let c = SUBJECT_NAME.captures(subject.trim())?;
    let candidate = c[1].trim();
    let words = candidate.split_whitespace().count();
    let capitalized = candidate
        .split_whitespace()
        .all(|w| w.chars().next().is_some_and(char::is_uppercase));
    ((2..=4).contains(&words) && capitalized)
        .then(|| normalize::name(candidate))
        .flatten()
}

fn lead_type_in_subject(subject: &str) -> Option<LeadType> {
    let s = subject.to_lowercase();
    if s.contains("seller") || s.contains("home valuation") || s.contains("home worth") {
        Some(LeadType::Seller)
    } else if s.contains("rental") || s.contains("renter") || s.contains("for rent") {
        Some(LeadType::Renter)
    } else if s.contains("buyer") {
        Some(LeadType::Buyer)
    } else {
        None
    }
}

static ADDRESS_OF_INTEREST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(?:tour|see|visit|about|interested in|showing(?: of| at)?|view|viewing)\s+(\d{1,6}\s)")
        .expect("static regex")
});

/// A street address the person says they are interested in ("wants to tour
/// 12 Oak St"): only right after such a verb, so footers never match.
fn address_of_interest(text: &str) -> Option<String> {
    let m = ADDRESS_OF_INTEREST.captures(text)?.get(1)?;
    let rest = &text[m.start()..];
    let line = rest.lines().next().unwrap_or(rest);
    STREET_ADDRESS
        .find(line)
        .filter(|a| a.start() == 0)
        .map(|a| a.as_str().to_string())
}

/// The name in a labelled value that may carry more: "Jane Roe
/// (jane@example.com, 555-010-1234)", "Jane Roe <jane@...>".
fn name_in_value(value: &str) -> Option<String> {
    // "Doe, John" (last name first, as CRM exports write it).
    if let Some((last, first)) = value.trim().split_once(',')
        && [last, first].iter().all(|w| {
            let w = w.trim();
            !w.is_empty()
                && !w.contains(' ')
                && w.chars().all(|c| c.is_alphabetic() || "'-.".contains(c))
        })
    {
        return normalize::full_name(Some(first), Some(last));
    }
    let head = value
        .split(['<', '[', '(', ',', '|'])
        .next()
        .unwrap_or(value);
    normalize::name(head)
}

/// Path fragments of listing pages on portals, IDX sites and brokerage sites.
const LISTING_PATHS: &[&str] = &[
    "homedetails",
    "realestateandhomes-detail",
    "/home/",
    "/homes/",
    "/listing/",
    "/listings/",
    "/property/",
    "/properties/",
    "/idx/",
    "/mls/",
];

/// The first link to a listing page, in the text or the HTML.
fn listing_url(text: &str, html: Option<&str>) -> Option<String> {
    let from_text = fields::find_urls(text).into_iter().map(str::to_string);
    let from_html = html.map(fields::html_links).unwrap_or_default();
    from_text.chain(from_html).find(|u| {
        let lower = u.to_ascii_lowercase();
        lower.starts_with("http")
            && LISTING_PATHS.iter().any(|p| lower.contains(p))
            && ![
                "unsubscribe",
                "optout",
                "opt-out",
                "preferences",
                "track",
                "click",
            ]
            .iter()
            .any(|w| lower.contains(w))
    })
}

/// Trims a message and the quotes portals wrap around it.
pub fn clean_message(m: &str) -> String {
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
          (?:,\s*[A-Z][A-Za-z.\x20]+,\s*[A-Z]{2}(?:\s+\d{5}(?:-\d{4})?)?)?",
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
        .find_map(|l| {
            // "555-010-1111 / 555-010-2222": the first number that is valid.
            fields::find_phone_candidates(&l.value)
                .into_iter()
                .find_map(|c| normalize::phone(c, opts.default_region))
                .or_else(|| normalize::phone(&l.value, opts.default_region))
        })
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
    fn mls_in_free_text() {
        assert_eq!(mls_in_text("MLSID # 12345678").as_deref(), Some("12345678"));
        assert_eq!(
            mls_in_text("see MLS: AB-123456 now").as_deref(),
            Some("AB-123456")
        );
        assert_eq!(mls_in_text("no number here"), None);
    }

    #[test]
    fn names_in_values() {
        assert_eq!(name_in_value("Doe, John").as_deref(), Some("John Doe"));
        assert_eq!(
            name_in_value("Jane Roe (jane@example.com, 555-010-1234)").as_deref(),
            Some("Jane Roe")
        );
        assert_eq!(
            name_in_value("Jane Roe, jane@example.com").as_deref(),
            Some("Jane Roe")
        );
    }

    #[test]
    fn system_addresses() {
        assert!(is_system_address("noreply@site.example"));
        assert!(is_system_address("leads@email.realtor.com"));
        assert!(!is_system_address("x7@convo.zillow.com"));
        assert!(!is_system_address("jane.roe@example.com"));
    }
}
