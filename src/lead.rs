//! The data that flows between stages: what the parser makes of one message.
//!
//! These are plain types with no behaviour beyond serialization. `ParsedMessage`
//! is the parser's whole answer; its JSON form is the contract printed by
//! `leadmail parse`.

use serde::{Deserialize, Serialize};

/// What the parser concluded about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The message carries a lead with at least one way to reach the person.
    Lead,
    /// The message is not a lead by nature (auto-reply, bounce, our own notification...).
    Ignored,
    /// The message looked like it could be a lead but no contact data was found.
    Unparseable,
}

/// Buyer, seller or renter, when the message says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeadType {
    Buyer,
    Seller,
    Renter,
}

impl LeadType {
    pub fn as_str(self) -> &'static str {
        match self {
            LeadType::Buyer => "buyer",
            LeadType::Seller => "seller",
            LeadType::Renter => "renter",
        }
    }

    pub fn parse(s: &str) -> Option<LeadType> {
        let lower = s.trim().to_ascii_lowercase();
        // "a buyer", "Buy a home", "Selling my house".
        let word = lower
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty() && *w != "a" && *w != "an" && *w != "i" && *w != "am")
            .unwrap_or("");
        match word {
            "buyer" | "buy" | "buying" | "purchase" | "purchasing" => Some(LeadType::Buyer),
            "seller" | "sell" | "selling" => Some(LeadType::Seller),
            "renter" | "rent" | "renting" | "rental" | "tenant" | "lease" | "leasing" => {
                Some(LeadType::Renter)
            }
            _ => None,
        }
    }
}

/// How to reach the person who inquired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub name: Option<String>,
    /// Lower-cased address.
    pub email: Option<String>,
    /// E.164, e.g. `+15550104127`.
    pub phone: Option<String>,
}

impl Contact {
    /// A contact is reachable when it has an email or a phone; a bare name is not enough.
    pub fn is_reachable(&self) -> bool {
        self.email.is_some() || self.phone.is_some()
    }
}

/// The property the person asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Property {
    pub address: Option<String>,
    pub mls_number: Option<String>,
    /// Whole dollars.
    pub price: Option<i64>,
    pub url: Option<String>,
}

/// The agent a lead names as its recipient (e.g. "Assigned Agent:" or Lead Metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHint {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Envelope facts the later stages need but that are not part of the lead itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Outer From address, lower-cased.
    pub from: Option<String>,
    /// To, Cc, Delivered-To and X-Original-To addresses, lower-cased, in that order.
    pub recipients: Vec<String>,
    /// Host names of the links in the lead's part of the message (agent websites).
    pub link_hosts: Vec<String>,
    /// `Authentication-Results` header values, topmost (most recent) first.
    pub authentication_results: Vec<String>,
}

/// The parser's full answer for one message. Pure data, no I/O behind it.
/// Its JSON form (every field but the envelope, in this order) is the
/// contract printed by `leadmail parse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParsedMessage {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub source: String,
    pub lead_type: Option<LeadType>,
    pub contact: Contact,
    pub property: Property,
    pub message: Option<String>,
    pub forwarded_by: Option<String>,
    pub agent_hint: Option<AgentHint>,
    pub message_id: Option<String>,
    pub subject: Option<String>,
    #[serde(skip)]
    pub envelope: Envelope,
}

#[cfg(test)]
mod tests {
    use super::LeadType;

    #[test]
    fn lead_types_as_forms_write_them() {
        assert_eq!(LeadType::parse("Buyer"), Some(LeadType::Buyer));
        assert_eq!(LeadType::parse("a seller"), Some(LeadType::Seller));
        assert_eq!(LeadType::parse("Sell my home"), Some(LeadType::Seller));
        assert_eq!(LeadType::parse("Rent"), Some(LeadType::Renter));
        assert_eq!(LeadType::parse("Listing inquiry"), None);
        assert_eq!(LeadType::parse(""), None);
    }
}
