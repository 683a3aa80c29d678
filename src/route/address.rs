//! Street-address keys for matching a lead's property to a listing:
//! "731 Mulberry Street, Apt. 4, Ann Arbor" and "731 mulberry st #4" are
//! the same listing. Only the street line (with its unit) is compared: the
//! city, state and zip are written too many ways to be reliable.

/// The comparable key of an address, or `None` when it has no street line.
pub fn key(address: &str) -> Option<String> {
    let lower = address.to_lowercase();
    let mut parts = lower.split(',').map(str::trim).filter(|p| !p.is_empty());
    let street = parts.next()?;
    // "Apt 4" written as its own comma-separated part still belongs to the street.
    let unit_part = parts
        .next()
        .filter(|p| UNIT_WORDS.iter().any(|u| p.starts_with(u)) || p.starts_with('#'));
    let mut words: Vec<String> = Vec::new();
    for raw in street
        .split_whitespace()
        .chain(unit_part.into_iter().flat_map(str::split_whitespace))
    {
        let w: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '#')
            .collect();
        if w.is_empty() {
            continue;
        }
        if let Some(number) = w.strip_prefix('#') {
            words.push("unit".to_string());
            if !number.is_empty() {
                words.push(number.to_string());
            }
            continue;
        }
        words.push(canonical(&w).to_string());
    }
    // "unit unit 4" after "#" handling of "apt #4".
    words.dedup_by(|a, b| a == "unit" && b == "unit");
    (!words.is_empty()).then(|| words.join(" "))
}

const UNIT_WORDS: &[&str] = &["apt", "apartment", "unit", "suite", "ste", "#"];

fn canonical(word: &str) -> &str {
    match word {
        "street" => "st",
        "avenue" | "av" => "ave",
        "road" => "rd",
        "drive" => "dr",
        "lane" => "ln",
        "court" => "ct",
        "boulevard" => "blvd",
        "place" => "pl",
        "terrace" => "ter",
        "circle" => "cir",
        "parkway" => "pkwy",
        "highway" => "hwy",
        "trail" => "trl",
        "square" => "sq",
        "north" => "n",
        "south" => "s",
        "east" => "e",
        "west" => "w",
        "apt" | "apartment" | "suite" | "ste" => "unit",
        w => w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_address_share_a_key() {
        let a = key("731 Mulberry Street, Apt. 4, Ann Arbor, MI 48103");
        assert_eq!(a.as_deref(), Some("731 mulberry st unit 4"));
        assert_eq!(key("731 mulberry st #4"), a);
        assert_eq!(key("731 MULBERRY ST UNIT 4, Ann Arbor"), a);
        assert_eq!(key("12 North Oak Avenue").as_deref(), Some("12 n oak ave"));
        assert_ne!(key("731 Mulberry St"), a, "the unit matters");
        assert_eq!(key(""), None);
    }
}
