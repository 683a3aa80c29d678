//! The shared field-extraction toolkit: labelled values ("Email: x", "Email"
//! then the value on the next line, table cells rendered as lines), and
//! free-text finders for addresses and phone numbers.
//!
//! Everything here is a pure function over text; the source parsers and the
//! generic parser compose these.

use std::sync::LazyLock;

use regex::Regex;

/// A lead field a label can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    FirstName,
    LastName,
    Email,
    Phone,
    Address,
    City,
    State,
    Zip,
    Mls,
    Price,
    Url,
    Message,
    LeadType,
    AgentName,
    AgentEmail,
}

impl Field {
    /// Fields whose value may run over several lines.
    fn is_multiline(self) -> bool {
        matches!(self, Field::Message | Field::Address)
    }
}

/// Maps a normalized label (lower case, single spaces, no trailing colon) to its field.
fn field_for_label(label: &str) -> Option<Field> {
    use Field::*;
    Some(match label {
        "name" | "full name" | "contact name" | "consumer name" | "client name" | "lead name"
        | "buyer name" | "your name" | "customer name" | "prospect name" | "seller name"
        | "renter name" | "visitor name" | "from name" | "contact" => Name,
        "first name" | "first" | "fname" | "given name" => FirstName,
        "last name" | "last" | "lname" | "surname" | "family name" => LastName,
        "email" | "e-mail" | "email address" | "e-mail address" | "your email"
        | "contact email" | "consumer email" | "buyer email" | "lead email" | "customer email"
        | "email addr" | "client email" | "your email address" | "reply to" | "from email" => Email,
        "phone"
        | "phone number"
        | "phone #"
        | "phone#"
        | "phone no"
        | "telephone"
        | "tel"
        | "mobile"
        | "mobile phone"
        | "mobile number"
        | "cell"
        | "cell phone"
        | "contact phone"
        | "consumer phone"
        | "buyer phone"
        | "lead phone"
        | "your phone"
        | "best phone"
        | "home phone"
        | "work phone"
        | "daytime phone"
        | "customer phone"
        | "client phone"
        | "phone number (optional)"
        | "telephone number"
        | "contact number" => Phone,
        "property address"
        | "address"
        | "property"
        | "listing address"
        | "property of interest"
        | "street address"
        | "home address"
        | "subject property"
        | "listing" => Address,
        "city" => City,
        "state" => State,
        "zip" | "zip code" | "zipcode" | "postal code" => Zip,
        "mls" | "mls #" | "mls#" | "mls number" | "mls id" | "mlsid" | "mls no" | "mls id #"
        | "mlsid #" | "listing id" | "listing #" | "listing number" | "mls listing #" => Mls,
        "price" | "list price" | "listing price" | "asking price" | "max price" | "home price" => {
            Price
        }
        "listing url" | "property url" | "url" | "link" | "listing link" | "property link"
        | "page url" => Url,
        "message"
        | "comments"
        | "comment"
        | "question"
        | "questions"
        | "inquiry"
        | "notes"
        | "note"
        | "additional comments"
        | "additional information"
        | "lead message"
        | "message from lead"
        | "request"
        | "your message"
        | "details" => Message,
        "lead type" | "inquiry type" | "client type" => LeadType,
        "assigned agent" | "agent" | "agent name" | "assigned to" => AgentName,
        "agent email" | "assigned agent email" => AgentEmail,
        _ => return None,
    })
}

/// One labelled value found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labeled {
    pub field: Field,
    pub value: String,
}

static LABEL_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z][A-Za-z0-9 #/&'().\-]{0,40}?)\s*[:：]\s*(.*)$").expect("static regex")
});

/// Lower-cases a label, drops decorations (`*`, `-`, bullets) and collapses spaces.
fn normalize_label(label: &str) -> String {
    let cleaned: String = label
        .trim()
        .trim_matches(|c: char| c == '*' || c == '-' || c == '•' || c == '|')
        .to_lowercase();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Strips quoting and decorations that mail clients and renderers add to a line.
pub fn clean_line(line: &str) -> &str {
    line.trim()
        .trim_start_matches(['*', '•', '|'])
        .trim_end_matches(['*', '|'])
        .trim()
}

/// Returns the field a whole line names when the line is a label, with the
/// value that follows the colon on the same line.
fn label_of(line: &str) -> Option<(Field, String)> {
    let line = clean_line(line);
    if let Some(c) = LABEL_LINE.captures(line)
        && let Some(field) = field_for_label(&normalize_label(&c[1]))
    {
        return Some((field, clean_line(&c[2]).to_string()));
    }
    // A bare label on its own line ("Email Address" then the value below).
    if let Some(f) = field_for_label(&normalize_label(line)) {
        return Some((f, String::new()));
    }
    // "Maria Gonzalez says:" / "Maria asked:" introduces the person's message.
    SAYS_LINE
        .is_match(line)
        .then(|| (Field::Message, String::new()))
}

static SAYS_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([\p{L}][\p{L}.' \-]{0,60})\s(?:says|asked|asks)\s*:$").expect("static regex")
});

/// The person introduced by a "Maria Gonzalez says:" line.
pub fn speaker(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        SAYS_LINE
            .captures(clean_line(l))
            .and_then(|c| c.get(1))
            .map(|m| m.as_str().trim())
    })
}

/// Finds every labelled value in `text`, in order.
///
/// A label followed by an empty value takes the next non-empty line as its
/// value (table cells and "label above value" layouts). Messages and
/// addresses continue over the following lines until a blank line or
/// another label.
pub fn scan_labels(text: &str) -> Vec<Labeled> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((field, mut value)) = label_of(lines[i]) else {
            i += 1;
            continue;
        };
        let bare = value.is_empty();
        i += 1;
        if bare {
            // The value is on the next non-empty line, unless that line is another label.
            while i < lines.len() && clean_line(lines[i]).is_empty() {
                i += 1;
            }
            if i < lines.len() && label_of(lines[i]).is_none() {
                value = clean_line(lines[i]).to_string();
                i += 1;
            }
        }
        if field.is_multiline() && !value.is_empty() {
            while i < lines.len() {
                let next = clean_line(lines[i]);
                if next.is_empty() || label_of(lines[i]).is_some() {
                    break;
                }
                value.push('\n');
                value.push_str(next);
                i += 1;
            }
        }
        if !value.is_empty() {
            out.push(Labeled { field, value });
        }
    }
    out
}

/// The first value for `field`, if any.
pub fn first(labels: &[Labeled], field: Field) -> Option<&str> {
    labels
        .iter()
        .find(|l| l.field == field)
        .map(|l| l.value.as_str())
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9][a-z0-9._%+'\-]*@[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)*\.[a-z]{2,24}")
        .expect("static regex")
});

/// Every email address in `text`, lower-cased, in order of appearance.
pub fn find_emails(text: &str) -> Vec<String> {
    EMAIL
        .find_iter(text)
        .map(|m| m.as_str().trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

static PHONE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        (?:\+\d{1,3}[\s.\-]?)?          # country code
        (?:\(\d{3}\)|\b\d{3})[\s.\-]?    # area code
        \d{3}[\s.\-]?\d{4}\b",
    )
    .expect("static regex")
});

/// Phone-number-shaped substrings of `text`, in order (not yet validated).
pub fn find_phone_candidates(text: &str) -> Vec<&str> {
    PHONE.find_iter(text).map(|m| m.as_str()).collect()
}

static HREF: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"#).expect("static regex")
});

/// The targets of every link in an HTML document, entity `&amp;` decoded.
pub fn html_links(html: &str) -> Vec<String> {
    HREF.captures_iter(html)
        .filter_map(|c| c.get(1).or(c.get(2)).or(c.get(3)))
        .map(|m| m.as_str().trim().replace("&amp;", "&"))
        .collect()
}

static URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"https?://[^\s<>"'\])]+"#).expect("static regex"));

/// Every http(s) URL written out in `text`.
pub fn find_urls(text: &str) -> Vec<&str> {
    URL.find_iter(text)
        .map(|m| m.as_str().trim_end_matches(['.', ',', ';']))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_with_value_on_same_line() {
        let l = scan_labels("Name: Jane Roe\nEmail Address: jane@example.com\n");
        assert_eq!(first(&l, Field::Name), Some("Jane Roe"));
        assert_eq!(first(&l, Field::Email), Some("jane@example.com"));
    }

    #[test]
    fn label_with_value_on_next_line() {
        let l = scan_labels("Consumer Name:\nJane Roe\nPhone#:\n\n(555) 010-1234\n");
        assert_eq!(first(&l, Field::Name), Some("Jane Roe"));
        assert_eq!(first(&l, Field::Phone), Some("(555) 010-1234"));
    }

    #[test]
    fn empty_label_does_not_swallow_the_next_label() {
        let l = scan_labels("Phone:\nEmail: a@example.com\n");
        assert_eq!(first(&l, Field::Phone), None);
        assert_eq!(first(&l, Field::Email), Some("a@example.com"));
    }

    #[test]
    fn message_runs_over_lines_until_blank() {
        let l = scan_labels("Comment:\nI'd like to see it.\nSaturday works.\n\nFooter text");
        assert_eq!(
            first(&l, Field::Message),
            Some("I'd like to see it.\nSaturday works.")
        );
    }

    #[test]
    fn says_line_introduces_the_message() {
        let l = scan_labels("Maria Gonzalez says:\n\"Can we tour it?\"\n\nMove in\n");
        assert_eq!(first(&l, Field::Message), Some("\"Can we tour it?\""));
    }

    #[test]
    fn unknown_labels_are_ignored() {
        assert!(scan_labels("Date: Mon, 1 Jan 2026\nSubject: hi\n").is_empty());
    }

    #[test]
    fn finds_emails_and_phones_in_text() {
        let t = "Reach Jane at Jane.Roe@Example.com or (555) 010-4477, thanks.";
        assert_eq!(find_emails(t), ["jane.roe@example.com"]);
        assert_eq!(find_phone_candidates(t), ["(555) 010-4477"]);
    }

    #[test]
    fn links_are_harvested_from_html() {
        let h = r#"<a href="tel:5550104477">x</a><a href='https://a.example/?a=1&amp;b=2'>y</a>"#;
        assert_eq!(
            html_links(h),
            ["tel:5550104477", "https://a.example/?a=1&b=2"]
        );
    }
}
