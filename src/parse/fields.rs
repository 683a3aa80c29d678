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
    /// The portal or system the lead originally came from ("Lead Source: Zillow").
    Source,
}

impl Field {
    /// Fields whose value may run over several lines.
    fn is_multiline(self) -> bool {
        matches!(self, Field::Message | Field::Address)
    }
}

/// Normalized labels (lower case, single spaces, no colon) and the field each names.
const LABELS: &[(&str, Field)] = &[
    ("name", Field::Name),
    ("full name", Field::Name),
    ("contact name", Field::Name),
    ("consumer name", Field::Name),
    ("client name", Field::Name),
    ("lead name", Field::Name),
    ("buyer name", Field::Name),
    ("your name", Field::Name),
    ("customer name", Field::Name),
    ("prospect name", Field::Name),
    ("seller name", Field::Name),
    ("renter name", Field::Name),
    ("visitor name", Field::Name),
    ("from name", Field::Name),
    ("contact", Field::Name),
    ("guest name", Field::Name),
    ("visitor", Field::Name),
    ("guest", Field::Name),
    ("customer", Field::Name),
    ("buyer", Field::Name),
    ("seller", Field::Name),
    ("renter", Field::Name),
    ("tenant", Field::Name),
    ("applicant", Field::Name),
    ("employee", Field::Name),
    ("transferee", Field::Name),
    ("first name", Field::FirstName),
    ("first", Field::FirstName),
    ("fname", Field::FirstName),
    ("given name", Field::FirstName),
    ("last name", Field::LastName),
    ("last", Field::LastName),
    ("lname", Field::LastName),
    ("surname", Field::LastName),
    ("family name", Field::LastName),
    ("email", Field::Email),
    ("e-mail", Field::Email),
    ("email address", Field::Email),
    ("e-mail address", Field::Email),
    ("your email", Field::Email),
    ("contact email", Field::Email),
    ("consumer email", Field::Email),
    ("buyer email", Field::Email),
    ("lead email", Field::Email),
    ("customer email", Field::Email),
    ("email addr", Field::Email),
    ("client email", Field::Email),
    ("your email address", Field::Email),
    ("reply to", Field::Email),
    ("from email", Field::Email),
    ("visitor email", Field::Email),
    ("guest email", Field::Email),
    ("phone", Field::Phone),
    ("phone number", Field::Phone),
    ("phone #", Field::Phone),
    ("phone#", Field::Phone),
    ("phone no", Field::Phone),
    ("telephone", Field::Phone),
    ("tel", Field::Phone),
    ("mobile", Field::Phone),
    ("mobile phone", Field::Phone),
    ("mobile number", Field::Phone),
    ("cell", Field::Phone),
    ("cell phone", Field::Phone),
    ("contact phone", Field::Phone),
    ("consumer phone", Field::Phone),
    ("buyer phone", Field::Phone),
    ("lead phone", Field::Phone),
    ("your phone", Field::Phone),
    ("best phone", Field::Phone),
    ("home phone", Field::Phone),
    ("work phone", Field::Phone),
    ("daytime phone", Field::Phone),
    ("customer phone", Field::Phone),
    ("client phone", Field::Phone),
    ("phone number (optional)", Field::Phone),
    ("telephone number", Field::Phone),
    ("contact number", Field::Phone),
    ("visitor phone", Field::Phone),
    ("guest phone", Field::Phone),
    ("cell number", Field::Phone),
    ("property address", Field::Address),
    ("address", Field::Address),
    ("property", Field::Address),
    ("listing address", Field::Address),
    ("property of interest", Field::Address),
    ("street address", Field::Address),
    ("home address", Field::Address),
    ("subject property", Field::Address),
    ("listing", Field::Address),
    ("interested in", Field::Address),
    ("open house", Field::Address),
    ("home of interest", Field::Address),
    ("listing of interest", Field::Address),
    ("home", Field::Address),
    ("house", Field::Address),
    ("property interested in", Field::Address),
    ("city", Field::City),
    ("state", Field::State),
    ("zip", Field::Zip),
    ("zip code", Field::Zip),
    ("zipcode", Field::Zip),
    ("postal code", Field::Zip),
    ("mls", Field::Mls),
    ("mls #", Field::Mls),
    ("mls#", Field::Mls),
    ("mls number", Field::Mls),
    ("mls id", Field::Mls),
    ("mlsid", Field::Mls),
    ("mls no", Field::Mls),
    ("mls id #", Field::Mls),
    ("mlsid #", Field::Mls),
    ("listing id", Field::Mls),
    ("listing #", Field::Mls),
    ("listing number", Field::Mls),
    ("mls listing #", Field::Mls),
    ("price", Field::Price),
    ("list price", Field::Price),
    ("listing price", Field::Price),
    ("asking price", Field::Price),
    ("max price", Field::Price),
    ("home price", Field::Price),
    ("listing url", Field::Url),
    ("property url", Field::Url),
    ("url", Field::Url),
    ("link", Field::Url),
    ("listing link", Field::Url),
    ("property link", Field::Url),
    ("page url", Field::Url),
    ("view listing", Field::Url),
    ("view property", Field::Url),
    ("link to listing", Field::Url),
    ("listing page", Field::Url),
    ("message", Field::Message),
    ("comments", Field::Message),
    ("comment", Field::Message),
    ("question", Field::Message),
    ("questions", Field::Message),
    ("inquiry", Field::Message),
    ("notes", Field::Message),
    ("note", Field::Message),
    ("additional comments", Field::Message),
    ("additional information", Field::Message),
    ("lead message", Field::Message),
    ("message from lead", Field::Message),
    ("request", Field::Message),
    ("your message", Field::Message),
    ("details", Field::Message),
    ("message body", Field::Message),
    ("lead type", Field::LeadType),
    ("inquiry type", Field::LeadType),
    ("client type", Field::LeadType),
    ("i am a", Field::LeadType),
    ("i am", Field::LeadType),
    ("i'm a", Field::LeadType),
    ("looking to", Field::LeadType),
    ("buying or selling", Field::LeadType),
    ("buy or sell", Field::LeadType),
    ("buyer or seller", Field::LeadType),
    ("assigned agent", Field::AgentName),
    ("agent", Field::AgentName),
    ("agent name", Field::AgentName),
    ("assigned to", Field::AgentName),
    ("agent email", Field::AgentEmail),
    ("assigned agent email", Field::AgentEmail),
    ("source", Field::Source),
    ("lead source", Field::Source),
    ("lead origin", Field::Source),
    ("origin", Field::Source),
];

fn field_for_label(label: &str) -> Option<Field> {
    LABELS
        .iter()
        .find(|(l, _)| *l == label)
        .map(|(_, f)| *f)
        .or_else(|| field_by_keyword(label))
}

/// Labels not in the table but plainly about the person: "Phone Number
/// (Mobile)", "Buyer's Email", "Primary Phone". Words that mark someone
/// else's details (agent, office, listing...) or another kind of field
/// (time, date, type...) keep a label out.
fn field_by_keyword(label: &str) -> Option<Field> {
    const NOT_THE_LEAD: &[&str] = &[
        "agent",
        "office",
        "listing",
        "broker",
        "company",
        "team",
        "support",
        "lender",
        "time",
        "date",
        "type",
        "method",
        "preferred contact",
        "opt",
        "consent",
        "ok to",
    ];
    if label.len() > 40 || NOT_THE_LEAD.iter().any(|w| label.contains(w)) {
        return None;
    }
    let words: Vec<&str> = label
        .split(|c: char| !c.is_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    // Names of things, not of the person.
    const THINGS: &[&str] = &[
        "ad",
        "campaign",
        "form",
        "page",
        "property",
        "community",
        "building",
        "street",
        "subdivision",
        "file",
        "project",
        "business",
        "school",
        "site",
        "source",
    ];
    if THINGS.iter().any(|w| has(w)) {
        return None;
    }
    if has("email") || has("e-mail") {
        Some(Field::Email)
    } else if has("phone") || has("mobile") || has("cell") || has("telephone") {
        Some(Field::Phone)
    } else if has("address") && !has("ip") && !has("web") {
        Some(Field::Address)
    } else if words.last() == Some(&"name") && !has("first") && !has("last") && !has("user") {
        Some(Field::Name)
    } else {
        None
    }
}

/// One labelled value found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labeled {
    pub field: Field,
    pub value: String,
}

static LABEL_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([A-Za-z][A-Za-z0-9 #/&'()._?\-]{0,40}?)\s*[:：]\s*(.*)$").expect("static regex")
});

/// Lower-cases a label, drops decorations (`*`, `-`, bullets) and collapses spaces.
fn normalize_label(label: &str) -> String {
    // Form exports write `phone_number` and `when_are_you_looking?`.
    let cleaned: String = label
        .trim()
        .trim_matches(|c: char| c == '*' || c == '-' || c == '•' || c == '|' || c == '?')
        .to_lowercase()
        .replace('_', " ");
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
                // An address never runs into a "Something: value" line; a
                // message may ("Note: 5:30 works"), up to a known label.
                let other_field = field == Field::Address
                    && (LABEL_LINE.is_match(next)
                        || next.to_ascii_lowercase().starts_with("mls")
                        || value.lines().count() >= 3);
                if next.is_empty() || other_field || label_of(lines[i]).is_some() {
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
          \+\d{1,3}(?:[\s.\-]?\(?\d{1,4}\)?){2,6}\b    # international, +country first
        | (?:\+?1[\s.\-]?)?                           # North American: optional 1
          (?:\(\d{3}\)|\b\d{3})[\s.\-]?               # area code
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
    fn labels_found_by_keyword() {
        let l = scan_labels(
            "Ad Name: Spring Campaign\nPhone Number (Mobile): 555-010-1111\nBuyer's Email: b@example.com\nClient Full Name: Ann Lee\nAgent Phone: 555-010-9999\nBest Time To Call: evenings\n",
        );
        assert_eq!(first(&l, Field::Phone), Some("555-010-1111"));
        assert_eq!(first(&l, Field::Email), Some("b@example.com"));
        assert_eq!(first(&l, Field::Name), Some("Ann Lee"));
        let phones = l.iter().filter(|x| x.field == Field::Phone).count();
        assert_eq!(phones, 1, "the agent's phone is not the lead's");
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
