//! Sources: where raw messages come from. Each yields [`RawMessage`]s and
//! knows nothing of parsing or storage. Today: files, directories of `.eml`
//! files and standard input ([`file`]); IMAP comes next.

pub mod file;
pub mod imap;

/// One message as read, before any interpretation.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// Where it came from, for people: a path, `-` for stdin, later an IMAP locator.
    pub origin: String,
    pub bytes: Vec<u8>,
}
