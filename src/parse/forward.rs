//! Unwraps forwards: an agent forwarding a lead they received themselves.
//!
//! Recognised: attached `message/rfc822` parts, and inline forwards introduced
//! by a client's marker line (Gmail, Apple Mail, Thunderbird, Outlook's
//! "Original Message" and underscore rule) or, in a message whose subject says
//! it is a forward, a bare Outlook header block (From/Sent/To/Subject). Only
//! what comes after the marker is the lead: the agent's own note and signature
//! above it never are.

use std::sync::LazyLock;

use regex::Regex;

use super::fields;
use super::mime::{Mail, Mailbox, collapse_ws};

/// The forwarded message, as far as it can be recovered.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
}

static MARKER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)^(?:
            -{2,}\s*(?:forwarded\s+message|original\s+message|message\s+transféré|mensaje\s+reenviado)\s*-{2,}
          | begin\s+forwarded\s+message\s*:
          | _{10,}
        )",
    )
    .expect("static regex")
});

static FORWARD_SUBJECT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*(?:fwd?|fw|tr|wg|rv)\s*:").expect("static regex"));

static REPLY_SUBJECT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)^\s*(?:re|aw|sv)\s*:").expect("static regex"));

/// Header names that may appear in a forwarded header block.
fn header_block_name(name: &str) -> Option<&'static str> {
    match name.trim().to_ascii_lowercase().as_str() {
        "from" | "von" | "de" => Some("from"),
        "sent" | "date" | "datum" | "gesendet" | "fecha" | "enviado" => Some("date"),
        "to" | "an" | "para" | "à" => Some("to"),
        "cc" => Some("cc"),
        "subject" | "betreff" | "asunto" | "objet" => Some("subject"),
        "reply-to" => Some("reply-to"),
        _ => None,
    }
}

/// Returns the forwarded message inside `mail`, or `None` when it is not a forward.
pub fn unwrap(mail: &Mail) -> Option<Forwarded> {
    if let Some(inner) = mail.attached.first() {
        // Nested forwards: the innermost attached message is the original.
        let mut inner = inner;
        while let Some(deeper) = inner.attached.first() {
            inner = deeper;
        }
        return Some(Forwarded {
            from: inner.from.clone(),
            reply_to: inner.reply_to.clone(),
            subject: inner.subject.clone(),
            text: inner.text.clone(),
            html: inner.html.clone(),
        });
    }
    let subject = mail.subject.as_deref().unwrap_or("");
    if REPLY_SUBJECT.is_match(subject) {
        return None;
    }
    let lines: Vec<String> = mail.text.lines().map(str::to_string).collect();
    let marker = lines.iter().enumerate().find_map(|(i, l)| {
        let line = strip_quote(l).trim();
        MARKER
            .find(line)
            .map(|m| (i, line[m.end()..].trim().to_string()))
    });
    let (start, same_line) = match marker {
        Some((i, tail)) => (i + 1, tail),
        None => {
            let block = FORWARD_SUBJECT
                .is_match(subject)
                .then(|| find_header_block(&lines))
                .flatten()?;
            (block, String::new())
        }
    };
    // Yahoo runs the whole header block together on the marker's line.
    let mut rest: Vec<String> = split_run_together_headers(&same_line);
    rest.extend(lines[start..].iter().map(|l| strip_quote(l).to_string()));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    Some(parse_forwarded_block(&rest))
}

/// "From: A <a@x> To: b@y Sent: Monday Subject: Hi" -> one line per field.
fn split_run_together_headers(line: &str) -> Vec<String> {
    if line.is_empty() {
        return Vec::new();
    }
    let mut cuts = vec![0];
    for name in [
        "From:",
        "To:",
        "Cc:",
        "Sent:",
        "Date:",
        "Subject:",
        "Reply-To:",
    ] {
        let mut from = 0;
        while let Some(pos) = line[from..].find(name) {
            let at = from + pos;
            let boundary = at == 0 || line[..at].ends_with(char::is_whitespace);
            if boundary && at > 0 {
                cuts.push(at);
            }
            from = at + name.len();
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.push(line.len());
    cuts.windows(2)
        .map(|w| line[w[0]..w[1]].trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

static WROTE_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(?:on|le|am|el)\s.{4,200}\s(?:wrote|a écrit|schrieb|escribió)\s*:$")
        .expect("static regex")
});

/// The text above any quoted reply history ("-----Original Message-----",
/// "On Mon, ... wrote:", an Outlook From/Sent block): what the sender wrote
/// themselves. Call it on a message that is not a forward (or on the
/// forwarded original), where such history is an earlier conversation.
pub fn without_reply_history(text: &str) -> &str {
    let lines: Vec<&str> = text.lines().collect();
    let owned: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let block = find_header_block(&owned);
    let cut = lines.iter().enumerate().find_map(|(i, l)| {
        let t = l.trim();
        let is_history = MARKER.is_match(t) || WROTE_LINE.is_match(t) || block == Some(i);
        // History below something the sender wrote; a block at the very top
        // is the message itself (form mailers start with "From: ...").
        let wrote_above = lines[..i].iter().any(|l| !l.trim().is_empty());
        (is_history && wrote_above).then_some(i)
    });
    match cut {
        Some(i) => {
            // Byte offset of line i: lines() splits on \n, keeping any \r.
            let offset: usize = lines[..i].iter().map(|l| l.len() + 1).sum();
            &text[..offset.min(text.len())]
        }
        None => text,
    }
}

/// Drops one level of `>` quoting (Apple Mail quotes every forwarded line).
fn strip_quote(line: &str) -> &str {
    let t = line.trim_start();
    match t.strip_prefix('>') {
        Some(rest) => rest.strip_prefix(' ').unwrap_or(rest),
        None => line,
    }
}

/// Finds a bare "From: ... / Sent|Date: ... / Subject: ..." block (Outlook
/// without a marker line) and returns the index of its first line.
fn find_header_block(lines: &[String]) -> Option<usize> {
    (0..lines.len()).find(|&i| {
        let Some((name, _)) = strip_quote(&lines[i]).split_once(':') else {
            return false;
        };
        if header_block_name(name) != Some("from") {
            return false;
        }
        let window = &lines[i + 1..(i + 6).min(lines.len())];
        let names: Vec<&str> = window
            .iter()
            .filter_map(|l| strip_quote(l).split_once(':'))
            .filter_map(|(n, _)| header_block_name(n))
            .collect();
        names.contains(&"date") || names.contains(&"subject")
    })
}

/// Reads the header block at the top of `lines`, then the body below it.
fn parse_forwarded_block(lines: &[&str]) -> Forwarded {
    let mut fwd = Forwarded::default();
    let mut i = 0;
    // Skip blank lines between the marker and the block.
    while i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    let mut in_block = false;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() {
            if in_block {
                i += 1;
                break;
            }
            i += 1;
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            break;
        };
        let Some(kind) = header_block_name(name) else {
            break;
        };
        in_block = true;
        match kind {
            "from" => fwd.from = Some(parse_mailbox(value)),
            "reply-to" => fwd.reply_to = Some(parse_mailbox(value)),
            "subject" => fwd.subject = Some(collapse_ws(value)).filter(|s| !s.is_empty()),
            _ => {}
        }
        i += 1;
    }
    fwd.text = lines[i.min(lines.len())..].join("\n");
    fwd
}

/// Parses `"Name" <a@b>`, `Name [mailto:a@b]`, `a@b` or a bare name.
pub fn parse_mailbox(value: &str) -> Mailbox {
    let email = fields::find_emails(value).into_iter().next();
    let name_part = value
        .split(['<', '['])
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"')
        .trim();
    let name = if name_part.is_empty() || name_part.contains('@') {
        None
    } else {
        Some(collapse_ws(name_part))
    };
    Mailbox { name, email }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(subject: &str, text: &str) -> Mail {
        Mail {
            subject: Some(subject.to_string()),
            text: text.to_string(),
            ..Mail::default()
        }
    }

    #[test]
    fn gmail_forward() {
        let m = mail(
            "Fwd: New lead",
            "Please log this one.\nJane (agent) 555-010-9999\n\n---------- Forwarded message ---------\nFrom: Realtor.com <leads@email.realtor.com>\nDate: Mon, 2 Nov 2026\nSubject: New lead\nTo: <jane@acme.example>\n\nFirst Name: Ann\n",
        );
        let f = unwrap(&m).unwrap();
        assert_eq!(
            f.from.unwrap().email.as_deref(),
            Some("leads@email.realtor.com")
        );
        assert_eq!(f.subject.as_deref(), Some("New lead"));
        assert_eq!(f.text.trim(), "First Name: Ann");
    }

    #[test]
    fn outlook_block_needs_forward_subject() {
        let text = "See below\n\nFrom: Ann Lee [mailto:ann@example.com]\nSent: Monday\nTo: Jane\nSubject: House\n\nHi, is it available?";
        assert!(unwrap(&mail("House", text)).is_none());
        let f = unwrap(&mail("FW: House", text)).unwrap();
        assert_eq!(f.from.unwrap().name.as_deref(), Some("Ann Lee"));
        assert_eq!(f.text.trim(), "Hi, is it available?");
    }

    #[test]
    fn reply_is_not_a_forward() {
        let text = "Thanks!\n\n-----Original Message-----\nFrom: Ann\nSubject: House\n\nHi";
        assert!(unwrap(&mail("RE: House", text)).is_none());
    }

    #[test]
    fn reply_history_is_cut() {
        let t = "Saturday works.\nTom\n\n-----Original Message-----\nFrom: Bob\nSent: Sunday\n\nHi";
        assert_eq!(without_reply_history(t).trim(), "Saturday works.\nTom");
        let t = "Yes please.\n\nOn Mon, Nov 2, 2026 at 9:00 AM Bob Stone <bob@acme.example> wrote:\n> Want to see it?";
        assert_eq!(without_reply_history(t).trim(), "Yes please.");
        assert_eq!(without_reply_history("no history"), "no history");
    }

    #[test]
    fn yahoo_headers_on_one_line() {
        let text = "FYI\n\n----- Forwarded Message ----- From: Ann Lee <ann@example.com> To: Jane <jane@acme.example> Sent: Monday, November 2, 2026, 10:00:00 AM EST Subject: Tour request\n\nCan I see it?";
        let f = unwrap(&mail("Fw: Tour request", text)).unwrap();
        assert_eq!(f.from.unwrap().email.as_deref(), Some("ann@example.com"));
        assert_eq!(f.subject.as_deref(), Some("Tour request"));
        assert_eq!(f.text.trim(), "Can I see it?");
    }

    #[test]
    fn apple_mail_quoted_forward() {
        let text = "Begin forwarded message:\n\n> From: Ann Lee <ann@example.com>\n> Subject: Tour\n> \n> Can I see it Sunday?";
        let f = unwrap(&mail("Fwd: Tour", text)).unwrap();
        assert_eq!(f.from.unwrap().email.as_deref(), Some("ann@example.com"));
        assert_eq!(f.text.trim(), "Can I see it Sunday?");
    }
}
