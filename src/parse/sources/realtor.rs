//! Realtor.com: `leads@email.realtor.com`, subject `New realtor.com lead - First Last`,
//! `First Name:`/`Last Name:` labels (read by the generic scanner), often Lead Metadata.

use std::sync::LazyLock;

use regex::Regex;

use super::super::extracted::{Context, Extracted};
use super::super::normalize;
use super::SourceParser;

pub struct Realtor;

static SUBJECT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)new realtor\.com (?:lead|inquiry|connection)s?\s*[-–:]\s*(.+)$")
        .expect("static regex")
});

impl SourceParser for Realtor {
    fn name(&self) -> &'static str {
        "realtor.com"
    }

    fn detect(&self, ctx: &Context<'_>) -> bool {
        super::sender_source(ctx) == Some("realtor.com")
    }

    fn extract(&self, ctx: &Context<'_>) -> Extracted {
        Extracted {
            name: ctx
                .subject
                .and_then(|s| SUBJECT_NAME.captures(s))
                .and_then(|c| normalize::name(&c[1])),
            ..Extracted::default()
        }
    }
}
