//! Zillow and Trulia (Zillow Group): From is `"Lead Name" <token@convo.zillow.com>`;
//! the display name is the lead and the relay address reaches them. The phone
//! is often only in a Call/SMS link (`phone=%28555%29%20010-4477`), which the
//! generic link scan reads; the address is in the subject.

use std::sync::LazyLock;

use regex::Regex;

use super::super::extracted::{Context, Extracted};
use super::super::normalize;
use super::SourceParser;

pub struct Zillow;

static SUBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^(?:(?:re|fwd?):\s*)*(?:(.+?) (?:is requesting information|wants to tour|asked a question|has a question|is interested) (?:about|in|on)?\s*(.+)|new (?:message|lead|contact) (?:about|for|from)\s+(.+))$",
    )
    .expect("static regex")
});

impl SourceParser for Zillow {
    fn name(&self) -> &'static str {
        "zillow"
    }

    fn detect(&self, ctx: &Context<'_>) -> bool {
        matches!(super::sender_source(ctx), Some("zillow" | "trulia"))
    }

    fn extract(&self, ctx: &Context<'_>) -> Extracted {
        let relay = ctx
            .from
            .filter(|f| f.email.as_deref().is_some_and(|e| e.contains("@convo.")));
        let subject = ctx.subject.and_then(|s| SUBJECT.captures(s));
        let subject_name = subject
            .as_ref()
            .and_then(|c| c.get(1))
            .and_then(|m| normalize::name(m.as_str()));
        let subject_address = subject
            .as_ref()
            .and_then(|c| c.get(2).or(c.get(3)))
            .map(|m| {
                m.as_str()
                    .trim()
                    .trim_end_matches(['.', '?', '!'])
                    .to_string()
            })
            .filter(|a| a.chars().next().is_some_and(|c| c.is_ascii_digit()));
        let trulia = super::sender_source(ctx) == Some("trulia");
        Extracted {
            source: trulia.then(|| "trulia".to_string()),
            name: relay
                .and_then(|f| f.name.as_deref())
                .and_then(normalize::name)
                .or(subject_name),
            email: relay.and_then(|f| f.email.clone()),
            address: subject_address,
            ..Extracted::default()
        }
    }
}
