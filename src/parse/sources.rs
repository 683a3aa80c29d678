//! Which system sent a lead, from the sender's domain.
//!
//! Each entry names the source as it appears in `ParsedMessage::source`.
//! Source-specific extraction grows here (one module per source) in later work.

/// (sender domain suffix, source name)
const SOURCES: &[(&str, &str)] = &[
    ("realtor.com", "realtor.com"),
    ("move.com", "realtor.com"),
    ("zillow.com", "zillow"),
    ("trulia.com", "trulia"),
    ("streeteasy.com", "streeteasy"),
    ("homes.com", "homes.com"),
    ("redfin.com", "redfin"),
    ("leadrouter.com", "leadrouter"),
    ("socialbay.com", "socialbay"),
];

/// Name used when no known source matches.
pub const GENERIC: &str = "generic";

/// Detects the source from the (inner, when forwarded) sender address, then
/// from the subject for sources that reach us through intermediaries.
pub fn detect(sender: Option<&str>, subject: Option<&str>) -> &'static str {
    if let Some(name) = sender
        .and_then(|s| s.rsplit_once('@'))
        .and_then(|(_, domain)| source_of_domain(domain))
    {
        return name;
    }
    let subject = subject.unwrap_or("").to_ascii_lowercase();
    if subject.contains("facebook") {
        return "facebook";
    }
    GENERIC
}

fn source_of_domain(domain: &str) -> Option<&'static str> {
    SOURCES
        .iter()
        .find(|(suffix, _)| {
            domain == *suffix
                || domain
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .map(|(_, name)| *name)
}

/// Whether `domain` belongs to a known lead source (its addresses are never the lead's).
pub fn is_source_domain(domain: &str) -> bool {
    source_of_domain(domain).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_domain_suffix() {
        assert_eq!(detect(Some("leads@email.realtor.com"), None), "realtor.com");
        assert_eq!(detect(Some("abc@convo.zillow.com"), None), "zillow");
        assert_eq!(detect(Some("jane@notzillow.com"), None), "generic");
        assert_eq!(detect(None, None), "generic");
        assert_eq!(
            detect(None, Some("New Facebook Lead Ad submission")),
            "facebook"
        );
    }
}
