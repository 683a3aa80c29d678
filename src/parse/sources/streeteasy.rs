//! StreetEasy: `Name [mailto:addr]` in the text, Lead Metadata in the HTML
//! head, the lead's name in capitals in the subject.

use std::sync::LazyLock;

use regex::Regex;

use super::super::extracted::{Context, Extracted};
use super::super::normalize;
use super::SourceParser;

pub struct StreetEasy;

static MAILTO_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*([\p{L}][\p{L}.' \-]{1,60}?)\s*\[mailto:([^\]\s]+)\]")
        .expect("static regex")
});

static SUBJECT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:inquiry|message|lead) from ([\p{L}.' \-]+?)(?:\s+(?:about|for|re)\b.*)?$")
        .expect("static regex")
});

impl SourceParser for StreetEasy {
    fn name(&self) -> &'static str {
        "streeteasy"
    }

    fn detect(&self, ctx: &Context<'_>) -> bool {
        super::sender_source(ctx) == Some("streeteasy")
    }

    fn extract(&self, ctx: &Context<'_>) -> Extracted {
        let mailto = MAILTO_NAME.captures(ctx.text);
        Extracted {
            name: mailto
                .as_ref()
                .and_then(|c| normalize::name(&c[1]))
                .or_else(|| {
                    ctx.subject
                        .and_then(|s| SUBJECT_NAME.captures(s))
                        .and_then(|c| normalize::name(&c[1]))
                }),
            email: mailto.map(|c| c[2].to_ascii_lowercase()),
            ..Extracted::default()
        }
    }
}
