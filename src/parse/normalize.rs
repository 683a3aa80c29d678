//! Normalization of extracted values: phone numbers to E.164, names, prices,
//! addresses. Pure functions; a value that cannot be normalized is dropped
//! (returns `None`) rather than mangled.

use phonenumber::country;

/// Normalizes a phone number written any usual way to E.164.
///
/// Extensions are dropped. Numbers that libphonenumber rejects are dropped,
/// with one exception: well-formed North American numbers (10 digits, area
/// code 2-9xx) are kept even when the exchange is unassigned, because the
/// 555-01xx block is reserved for fictional use and appears in test data.
pub fn phone(raw: &str, region: country::Id) -> Option<String> {
    let raw = strip_extension(raw);
    let digits = raw.chars().filter(|c| c.is_ascii_digit()).count();
    if !(7..=15).contains(&digits) {
        return None;
    }
    if let Some(e164) = north_american(raw, region) {
        return Some(e164);
    }
    // A number written with its country code is parsed without a region:
    // the phonenumber crate would otherwise strip the default region's
    // national prefix ("1" for the US) from it (+33 1 42... -> +33 42...).
    let region = (!raw.trim_start().starts_with('+')).then_some(region);
    let number = phonenumber::parse(region, raw).ok()?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    if number.is_valid() {
        return Some(e164);
    }
    let national = number.national().value().to_string();
    let nanp_shape = number.code().value() == 1
        && national.len() == 10
        && matches!(national.as_bytes()[0], b'2'..=b'9');
    nanp_shape.then_some(e164)
}

/// The fast path for the common case: a North American number written with
/// its ten digits (optionally after 1 or +1), in a North American region.
/// Gives exactly what the slow path below gives for such numbers (they are
/// kept whether or not libphonenumber knows the exchange), without its
/// regular-expression machinery, which dominates parse time otherwise.
fn north_american(raw: &str, region: country::Id) -> Option<String> {
    if !matches!(region, country::Id::US | country::Id::CA) {
        return None;
    }
    let trimmed = raw.trim();
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || " ()-.+".contains(c))
    {
        return None;
    }
    let plus = trimmed.starts_with('+');
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    let national = match (digits.len(), plus) {
        (10, false) => digits.as_str(),
        (11, _) if digits.starts_with('1') => &digits[1..],
        _ => return None,
    };
    matches!(national.as_bytes()[0], b'2'..=b'9').then(|| format!("+1{national}"))
}

/// Cuts "x123", "ext. 123", "extension 123" off the end of a number.
fn strip_extension(raw: &str) -> &str {
    let lower = raw.to_ascii_lowercase();
    for marker in ["extension", "ext.", "ext", " x", "#"] {
        if let Some(pos) = lower.find(marker)
            && pos > 0
        {
            return raw[..pos].trim();
        }
    }
    raw.trim()
}

/// Cleans a person's name: collapses white space, strips stray quotes and
/// punctuation, and title-cases names written entirely in capitals (the
/// person's own mixed capitalization, e.g. "McDonald" or "de la Cruz", is kept).
pub fn name(raw: &str) -> Option<String> {
    let collapsed = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches(|c: char| c == '"' || c == '\'' || c == ',' || c == ';' || c == ':')
        .trim()
        .to_string();
    if collapsed.is_empty()
        || collapsed.contains('@')
        || !collapsed.chars().any(char::is_alphabetic)
    {
        return None;
    }
    let has_lower = collapsed.chars().any(char::is_lowercase);
    let has_upper = collapsed.chars().any(char::is_uppercase);
    if has_upper && !has_lower {
        Some(title_case(&collapsed))
    } else {
        Some(collapsed)
    }
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // Letters seen since the last word boundary: an apostrophe after a single
    // letter (O'Brien, D'Angelo) starts a new capitalized part.
    let mut run = 0usize;
    let mut capitalize_next = true;
    for c in s.chars() {
        if c.is_alphabetic() {
            if capitalize_next {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            capitalize_next = false;
            run += 1;
        } else {
            out.push(c);
            capitalize_next = c != '\'' || run == 1;
            run = 0;
        }
    }
    out
}

/// Joins first and last name parts.
pub fn full_name(first: Option<&str>, last: Option<&str>) -> Option<String> {
    let joined = [first, last]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    name(&joined)
}

/// Parses "$425,000", "425000", "$1.2M", "425K" into whole dollars.
pub fn price(raw: &str) -> Option<i64> {
    let s = raw.trim().to_ascii_lowercase();
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let tail = &s[start..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(tail.len());
    let number = tail[..end].replace(',', "");
    let suffix = tail[end..].trim_start();
    let multiplier = if suffix.starts_with('m') {
        1_000_000.0
    } else if suffix.starts_with('k') {
        1_000.0
    } else {
        1.0
    };
    let value: f64 = number.parse().ok()?;
    let dollars = (value * multiplier).round();
    (1.0..1e12).contains(&dollars).then_some(dollars as i64)
}

/// Joins a multi-line postal address into one line: "12 Oak St, Ann Arbor, MI 48103".
pub fn address(raw: &str) -> Option<String> {
    let joined = raw
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .map(|l| l.trim_matches(',').trim().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(", ");
    (!joined.is_empty()).then_some(joined)
}

/// Normalizes an MLS number: the identifier without "#", spaces or labels.
pub fn mls_number(raw: &str) -> Option<String> {
    let token = raw
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .find(|t| t.chars().any(|c| c.is_ascii_digit()))?;
    (token.len() >= 3).then(|| token.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: country::Id = country::Id::US;

    #[test]
    fn phones_become_e164() {
        assert_eq!(phone("(555) 010-4127", US).as_deref(), Some("+15550104127"));
        assert_eq!(phone("555.010.4127", US).as_deref(), Some("+15550104127"));
        assert_eq!(
            phone("+1 555 010 4127", US).as_deref(),
            Some("+15550104127")
        );
        assert_eq!(phone("1-555-010-4127", US).as_deref(), Some("+15550104127"));
        assert_eq!(
            phone("(555) 010-4127 ext. 22", US).as_deref(),
            Some("+15550104127")
        );
        assert_eq!(
            phone("+44 20 7946 0958", US).as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn invalid_phones_are_dropped() {
        assert_eq!(phone("12345", US), None);
        assert_eq!(phone("(155) 010-4127", US), None);
        assert_eq!(phone("not a phone", US), None);
    }

    #[test]
    fn names_keep_own_capitalization_unless_all_caps() {
        assert_eq!(name("  Mary  McDonald ").as_deref(), Some("Mary McDonald"));
        assert_eq!(name("JOHN O'BRIEN").as_deref(), Some("John O'Brien"));
        assert_eq!(name("ana de la cruz").as_deref(), Some("ana de la cruz"));
        assert_eq!(name("jane@example.com"), None);
    }

    #[test]
    fn prices() {
        assert_eq!(price("$425,000"), Some(425_000));
        assert_eq!(price("1.2M"), Some(1_200_000));
        assert_eq!(price("$650K"), Some(650_000));
        assert_eq!(price("call"), None);
    }

    #[test]
    fn addresses_join_lines() {
        assert_eq!(
            address("731 Mulberry St\nAnn Arbor, MI 48103").as_deref(),
            Some("731 Mulberry St, Ann Arbor, MI 48103")
        );
    }

    #[test]
    fn mls_numbers() {
        assert_eq!(mls_number("# 12345678").as_deref(), Some("12345678"));
        assert_eq!(mls_number("MLS26007731").as_deref(), Some("MLS26007731"));
    }
}
