//! What one extractor found, and how findings are merged.
//!
//! Each extractor (Lead Metadata, ADF, a source parser, the generic scanner)
//! returns an [`Extracted`] with only the fields it is sure of. The parser
//! merges them field by field in precedence order with [`Extracted::or`]:
//! metadata > ADF > source parser > generic.

use crate::lead::LeadType;

use super::ParseOptions;
use super::mime::Mailbox;

/// Lead fields as one extractor found them, already normalized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extracted {
    pub source: Option<String>,
    pub lead_type: Option<LeadType>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub mls_number: Option<String>,
    pub price: Option<i64>,
    pub url: Option<String>,
    pub message: Option<String>,
    pub agent_name: Option<String>,
    pub agent_email: Option<String>,
}

impl Extracted {
    /// Field by field: `self` where it has a value, else `other`.
    pub fn or(self, other: Extracted) -> Extracted {
        Extracted {
            source: self.source.or(other.source),
            lead_type: self.lead_type.or(other.lead_type),
            name: self.name.or(other.name),
            email: self.email.or(other.email),
            phone: self.phone.or(other.phone),
            address: self.address.or(other.address),
            mls_number: self.mls_number.or(other.mls_number),
            price: self.price.or(other.price),
            url: self.url.or(other.url),
            message: self.message.or(other.message),
            agent_name: self.agent_name.or(other.agent_name),
            agent_email: self.agent_email.or(other.agent_email),
        }
    }
}

/// The part of a message that carries the lead (the whole message, or the
/// forwarded original inside it), with what every extractor needs.
pub struct Context<'a> {
    pub from: Option<&'a Mailbox>,
    pub reply_to: Option<&'a Mailbox>,
    pub subject: Option<&'a str>,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// XML parts and attachments (ADF).
    pub xml: &'a [String],
    /// Addresses that are never the lead's: recipients, the forwarding agent.
    pub decoys: &'a [String],
    pub options: &'a ParseOptions,
}

impl Context<'_> {
    pub fn from_email(&self) -> Option<&str> {
        self.from.and_then(|f| f.email.as_deref())
    }
}
