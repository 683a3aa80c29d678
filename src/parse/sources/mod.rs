//! Source parsers: what is special about each system that sends leads.
//!
//! Every source is a [`SourceParser`]: `detect` says whether a message came
//! from it (sender domain first), `extract` returns only what that source
//! does differently from the generic label scanner (a name in the subject,
//! a relay address that is the lead's, a phone hidden in a link). The generic
//! scanner fills in everything else, with lower precedence.

mod realtor;
mod streeteasy;
mod upnest;
mod zillow;

use super::extracted::{Context, Extracted};

/// One system that sends leads.
pub trait SourceParser: Sync {
    /// The `source` name this parser reports.
    fn name(&self) -> &'static str;
    /// Whether the message came from this source.
    fn detect(&self, ctx: &Context<'_>) -> bool;
    /// What this source says that the generic scanner would miss or get wrong.
    fn extract(&self, ctx: &Context<'_>) -> Extracted;
}

/// Sources known by sender domain only (the generic scanner reads them well).
struct DomainOnly {
    name: &'static str,
}

impl SourceParser for DomainOnly {
    fn name(&self) -> &'static str {
        self.name
    }
    fn detect(&self, ctx: &Context<'_>) -> bool {
        sender_source(ctx) == Some(self.name)
    }
    fn extract(&self, _: &Context<'_>) -> Extracted {
        Extracted::default()
    }
}

static PARSERS: &[&dyn SourceParser] = &[
    &realtor::Realtor,
    &zillow::Zillow,
    &streeteasy::StreetEasy,
    &upnest::UpNest,
    &DomainOnly { name: "homes.com" },
    &DomainOnly { name: "redfin" },
    &DomainOnly { name: "leadrouter" },
    &DomainOnly { name: "socialbay" },
];

/// (sender domain suffix, source name)
const DOMAINS: &[(&str, &str)] = &[
    ("realtor.com", "realtor.com"),
    ("move.com", "realtor.com"),
    ("zillow.com", "zillow"),
    ("trulia.com", "trulia"),
    ("streeteasy.com", "streeteasy"),
    ("homes.com", "homes.com"),
    ("redfin.com", "redfin"),
    ("leadrouter.com", "leadrouter"),
    ("socialbay.com", "socialbay"),
    ("upnest.com", "upnest"),
];

/// Name used when no known source matches.
pub const GENERIC: &str = "generic";

/// The parser for the message's source, if it is a known one.
pub fn find(ctx: &Context<'_>) -> Option<&'static dyn SourceParser> {
    PARSERS.iter().copied().find(|p| p.detect(ctx))
}

/// The source named by a sender domain.
pub fn source_of_domain(domain: &str) -> Option<&'static str> {
    let domain = domain.to_ascii_lowercase();
    DOMAINS
        .iter()
        .find(|(suffix, _)| {
            domain == *suffix
                || domain
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .map(|(_, name)| *name)
}

/// The source the sender is: by address domain, else by display name (a
/// forward that kept only "From: Realtor.com").
pub fn sender_source(ctx: &Context<'_>) -> Option<&'static str> {
    let from = ctx.from?;
    from.email
        .as_deref()
        .and_then(|a| a.rsplit_once('@'))
        .and_then(|(_, d)| source_of_domain(d))
        .or_else(|| {
            let name = from.name.as_deref()?.to_ascii_lowercase();
            NAMED
                .iter()
                .find(|(needle, _)| name.contains(needle))
                .map(|(_, source)| *source)
        })
}

/// Names by which people and subjects refer to a source.
const NAMED: &[(&str, &str)] = &[
    ("realtor.com", "realtor.com"),
    ("zillow", "zillow"),
    ("trulia", "trulia"),
    ("streeteasy", "streeteasy"),
    ("homes.com", "homes.com"),
    ("redfin", "redfin"),
    ("upnest", "upnest"),
    ("facebook", "facebook"),
];

/// Our name for a source as people write it ("Realtor.com", "Zillow Premier
/// Agent", "Opcity"); `None` for names we do not know.
pub fn known_name(raw: &str) -> Option<&'static str> {
    let compact: String = raw
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    Some(match compact.as_str() {
        "realtorcom"
        | "realtor"
        | "move"
        | "opcity"
        | "realtorcomopcity"
        | "realtorcomconnections" => "realtor.com",
        "zillow" | "zillowgroup" | "zillowpremieragent" | "zillowflex" => "zillow",
        "trulia" => "trulia",
        "streeteasy" => "streeteasy",
        "homescom" | "homes" => "homes.com",
        "redfin" => "redfin",
        "facebook" | "facebookleadads" | "facebookads" | "instagram" => "facebook",
        "upnest" => "upnest",
        "leadrouter" => "leadrouter",
        "socialbay" => "socialbay",
        _ => return None,
    })
}

/// Whether `domain` belongs to a known lead source.
pub fn is_source_domain(domain: &str) -> bool {
    source_of_domain(domain).is_some()
}

/// A source named only by the subject or the sender's display name (leads
/// that reach us through intermediaries, or forwards that kept no address).
pub fn source_from_names(ctx: &Context<'_>) -> Option<&'static str> {
    let subject = ctx.subject.unwrap_or("").to_ascii_lowercase();
    let sender = ctx
        .from
        .and_then(|f| f.name.as_deref())
        .unwrap_or("")
        .to_ascii_lowercase();
    let named = |needle: &str| subject.contains(needle) || sender.contains(needle);
    NAMED
        .iter()
        .find(|(needle, _)| named(needle))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_by_suffix() {
        assert_eq!(source_of_domain("email.realtor.com"), Some("realtor.com"));
        assert_eq!(source_of_domain("convo.zillow.com"), Some("zillow"));
        assert_eq!(source_of_domain("notzillow.com"), None);
    }
}
