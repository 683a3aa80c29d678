//! A small owned view of a MIME message: the headers and texts the extractors
//! need, decoded once by mail-parser (charsets, transfer encodings, RFC 2047).
//!
//! Nothing here knows what a lead is; it only turns bytes into text.

use mail_parser::{Address, MessageParser, MimeHeaders, PartType};

/// Scanning is bounded so that a hostile body costs linear time at most.
const MAX_TEXT_CHARS: usize = 512 * 1024;
/// How deep attached `message/rfc822` parts are followed.
const MAX_NESTING: usize = 4;

/// A display name and address, the address lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    /// To, Cc, Delivered-To, X-Original-To, lower-cased.
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// Every header as (name, unfolded raw value), in order.
    pub headers: Vec<(String, String)>,
    /// `type/subtype` of the top-level part, lower-cased.
    pub content_type: Option<String>,
    /// The `report-type` parameter of a `multipart/report`.
    pub report_type: Option<String>,
    /// The body as plain text: text/plain parts, else HTML rendered to text.
    pub text: String,
    /// The first HTML body, as sent (for Lead Metadata tags and links).
    pub html: Option<String>,
    /// Attached `message/rfc822` parts, already parsed.
    pub attached: Vec<Mail>,
    /// XML parts and attachments (`text/xml`, `application/xml`, `*.xml`), as text.
    pub xml: Vec<String>,
}

impl Mail {
    /// Parses raw bytes; `None` when they are not a message at all (empty, or
    /// neither headers nor body).
    pub fn parse(raw: &[u8]) -> Option<Mail> {
        let message = MessageParser::default().parse(raw)?;
        let mail = Mail::from_message(&message, 0);
        if mail.headers.is_empty() && mail.text.trim().is_empty() {
            return None;
        }
        Some(mail)
    }

    fn from_message(message: &mail_parser::Message<'_>, depth: usize) -> Mail {
        let headers: Vec<(String, String)> = message
            .headers_raw()
            .map(|(name, value)| (name.to_string(), unfold(value)))
            .collect();

        let mut recipients = Vec::new();
        for addr in message.all_to().chain(message.all_cc()) {
            recipients.extend(address_list(addr).into_iter().filter_map(|m| m.email));
        }
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("Delivered-To")
                || name.eq_ignore_ascii_case("X-Original-To")
            {
                recipients.extend(crate::parse::fields::find_emails(value));
            }
        }

        let (content_type, report_type) = match message.root_part().content_type() {
            Some(ct) => (
                Some(format!(
                    "{}/{}",
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase()
                )),
                ct.attribute("report-type").map(|s| s.to_ascii_lowercase()),
            ),
            None => (None, None),
        };

        let mut text = String::new();
        for part in message.text_bodies() {
            let piece = match &part.body {
                PartType::Text(t) => t.to_string(),
                PartType::Html(h) => html_to_text(prefix(h, MAX_TEXT_CHARS)),
                _ => continue,
            };
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(&piece);
            if text.len() > MAX_TEXT_CHARS {
                break;
            }
        }
        truncate_chars(&mut text, MAX_TEXT_CHARS);
        let html = message.html_bodies().find_map(|p| match &p.body {
            PartType::Html(h) => {
                let mut h = h.to_string();
                truncate_chars(&mut h, MAX_TEXT_CHARS);
                Some(h)
            }
            _ => None,
        });

        let attached = if depth < MAX_NESTING {
            message
                .parts
                .iter()
                .filter_map(|p| match &p.body {
                    PartType::Message(inner) => Some(Mail::from_message(inner, depth + 1)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };

        let xml = message
            .parts
            .iter()
            .filter(|p| {
                let subtype = p
                    .content_type()
                    .and_then(|ct| ct.subtype())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                subtype == "xml"
                    || subtype.ends_with("+xml")
                    || p.attachment_name()
                        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".xml"))
            })
            .filter_map(|p| match &p.body {
                PartType::Text(t) => Some(t.to_string()),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    Some(String::from_utf8_lossy(b).into_owned())
                }
                _ => None,
            })
            .take(4)
            .collect();

        Mail {
            xml,
            from: message
                .from()
                .and_then(|a| address_list(a).into_iter().next()),
            reply_to: message
                .reply_to()
                .and_then(|a| address_list(a).into_iter().next()),
            recipients,
            subject: message.subject().map(collapse_ws),
            message_id: message.message_id().map(|s| s.trim().to_string()),
            headers,
            content_type,
            report_type,
            text,
            html,
            attached,
        }
    }

    /// The first header with this name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// XML documents of this message and of any forwarded message inside it.
    pub fn xml_documents(&self) -> Vec<String> {
        let mut docs = self.xml.clone();
        for inner in &self.attached {
            docs.extend(inner.xml_documents());
        }
        docs
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

fn address_list(addr: &Address<'_>) -> Vec<Mailbox> {
    addr.iter()
        .map(|a| Mailbox {
            name: a
                .name()
                .map(collapse_ws)
                .map(|n| n.trim_matches(|c| c == '"' || c == '\'').trim().to_string())
                .filter(|n| !n.is_empty()),
            email: a
                .address()
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| e.contains('@')),
        })
        .collect()
}

/// Renders HTML as plain text with a maintained renderer. Table cells become
/// lines of their own, so "label cell, value cell" reads as "label\nvalue".
pub fn html_to_text(html: &str) -> String {
    html2text::config::plain_no_decorate()
        .raw_mode(true)
        .string_from_read(html.as_bytes(), 10_000)
        .unwrap_or_default()
}

fn unfold(value: &str) -> String {
    value
        .replace("\r\n", "\n")
        .replace("\n ", " ")
        .replace("\n\t", " ")
}

/// Collapses runs of white space to one space and trims.
pub fn collapse_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary.
fn prefix(s: &str, max_bytes: usize) -> &str {
    let mut cut = max_bytes.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

fn truncate_chars(s: &mut String, max_bytes: usize) {
    if s.len() > max_bytes {
        let mut cut = max_bytes;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}
