//! UpNest-style referrals: the name and city only in the subject
//! (`New seller lead: Jane Roe in Ann Arbor, MI`), email and phone on bare,
//! unlabelled lines of the body.

use std::sync::LazyLock;

use regex::Regex;

use super::super::extracted::{Context, Extracted};
use super::super::{fields, normalize};
use super::SourceParser;
use crate::lead::LeadType;

pub struct UpNest;

static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(buyer|seller)\b.*?:\s*([\p{L}.' \-]+?)\s+(?:in|from|near)\s+(.+)$")
        .expect("static regex")
});

impl SourceParser for UpNest {
    fn name(&self) -> &'static str {
        "upnest"
    }

    fn detect(&self, ctx: &Context<'_>) -> bool {
        super::sender_source(ctx) == Some("upnest")
    }

    fn extract(&self, ctx: &Context<'_>) -> Extracted {
        let subject = ctx.subject.and_then(|s| SUBJECT.captures(s));
        // Bare lines: a line that is nothing but an address or a phone number.
        let bare = |line: &str| line.trim().to_string();
        let email = ctx.text.lines().map(bare).find_map(|l| {
            let found = fields::find_emails(&l);
            (found.len() == 1 && found[0].len() + 2 >= l.len())
                .then(|| found[0].clone())
                .filter(|e| !ctx.decoys.contains(e) && !e.ends_with("@upnest.com"))
        });
        let phone = ctx.text.lines().map(bare).find_map(|l| {
            let digits = l.chars().filter(char::is_ascii_digit).count();
            let only_phone = l
                .chars()
                .all(|c| c.is_ascii_digit() || " ()+-.".contains(c));
            (only_phone && digits >= 10)
                .then(|| normalize::phone(&l, ctx.options.default_region))
                .flatten()
        });
        Extracted {
            lead_type: subject.as_ref().and_then(|c| LeadType::parse(&c[1])),
            name: subject.as_ref().and_then(|c| normalize::name(&c[2])),
            email,
            phone,
            ..Extracted::default()
        }
    }
}
