//! IMAP input: one connection to one brokerage's lead inbox.
//!
//! This module only speaks IMAP: connect (implicit TLS, STARTTLS or plain on
//! loopback), log in, list what is waiting, fetch it without setting \Seen
//! (`BODY.PEEK[]`), and acknowledge a message once the caller has committed
//! its outcome (UID MOVE, or COPY + \Deleted + UID EXPUNGE without MOVE, or
//! flags). It never decides anything about a message. Every network
//! operation has a timeout, so a hung server is detected and the connection
//! replaced by the caller.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

use crate::config::{AfterProcessing, ImapConfig, TlsMode};

/// Keywords set in `after = "flag"` mode.
pub const PROCESSED_KEYWORD: &str = "$LeadmailProcessed";
pub const QUARANTINED_KEYWORD: &str = "$LeadmailQuarantined";

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("login refused for {user}: {message}")]
    Login { user: String, message: String },
    #[error("IMAP: {0}")]
    Protocol(String),
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection was closed")]
    Closed,
    /// The server left out messages it was asked for (it answered NO, or
    /// another client expunged them); the caller reconnects and looks again.
    #[error("the server did not return {missing} of {asked} messages asked for (UID {first})")]
    Incomplete {
        missing: usize,
        asked: usize,
        first: u32,
    },
    /// A message acknowledged in this session is still waiting: the server
    /// did not take the acknowledgement (a STORE answered NO, say).
    #[error("message UID {0} is still waiting after it was acknowledged")]
    NotAcknowledged(u32),
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> Self {
        match e {
            async_imap::error::Error::ConnectionLost => ImapError::Closed,
            other => ImapError::Protocol(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ImapError {
    fn from(e: std::io::Error) -> Self {
        ImapError::Protocol(e.to_string())
    }
}

/// One command's round trip, given up after `t` (`[brokerages.imap] timeout`).
async fn timed<T, E: Into<ImapError>>(
    t: Duration,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ImapError> {
    match tokio::time::timeout(t, fut).await {
        Ok(r) => r.map_err(Into::into),
        Err(_) => Err(ImapError::Timeout(t)),
    }
}

/// Collects a command's responses, giving up when the server sends nothing
/// for `t`: a stalled transfer is detected, a slow but moving one is not cut.
async fn collect<T, E: Into<ImapError>>(
    t: Duration,
    stream: impl futures::Stream<Item = Result<T, E>>,
) -> Result<Vec<T>, ImapError> {
    let mut stream = std::pin::pin!(stream);
    let mut items = Vec::new();
    loop {
        match tokio::time::timeout(t, stream.next()).await {
            Ok(Some(item)) => items.push(item.map_err(Into::into)?),
            Ok(None) => return Ok(items),
            Err(_) => return Err(ImapError::Timeout(t)),
        }
    }
}

/// A plain or TLS connection, so that one client type serves both.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

type Session = async_imap::Session<Stream>;

/// What the selected mailbox looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxState {
    pub uid_validity: u32,
    pub exists: u32,
}

/// One fetched message.
#[derive(Debug)]
pub struct Fetched {
    pub uid: u32,
    pub size: u64,
    /// The whole message, or only its header when it was over the size limit.
    pub bytes: Vec<u8>,
    pub oversized: bool,
    /// When the server received it (RFC 3339 UTC), if it said.
    pub arrived: Option<String>,
}

/// Where an acknowledged message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Processed,
    Quarantined,
}

/// A logged-in connection to one inbox, with its mailbox selected.
pub struct Inbox {
    session: Session,
    /// What is known about the inbox besides the connection itself.
    pub about: InboxFacts,
}

/// The inbox's settings and what the server told us at login.
pub struct InboxFacts {
    config: ImapConfig,
    /// The folders as the server spells them (its hierarchy delimiter).
    processed_folder: String,
    quarantine_folder: String,
    can_idle: bool,
    can_move: bool,
    can_uidplus: bool,
    pub state: MailboxState,
}

impl Inbox {
    /// Connects, logs in, creates the folders it needs, and selects the mailbox.
    pub async fn open(config: &ImapConfig, password: &str) -> Result<Inbox, ImapError> {
        let t = config.timeout;
        let tcp = timed(t, TcpStream::connect((config.host.as_str(), config.port)))
            .await
            .map_err(|e| match e {
                ImapError::Protocol(m) => ImapError::Connect {
                    host: config.host.clone(),
                    port: config.port,
                    source: std::io::Error::other(m),
                },
                other => other,
            })?;
        tcp.set_nodelay(true).ok();
        let stream = match config.tls {
            TlsMode::Implicit => Stream::Tls(Box::new(tls_connect(config, tcp).await?)),
            TlsMode::None => {
                tracing::warn!(
                    message = "IMAP without TLS (loopback only).",
                    host = %config.host
                );
                Stream::Plain(tcp)
            }
            TlsMode::Starttls => {
                let mut client = async_imap::Client::new(tcp);
                greeting(&mut client, t).await?;
                timed(t, client.run_command_and_check_ok("STARTTLS", None)).await?;
                Stream::Tls(Box::new(tls_connect(config, client.into_inner()).await?))
            }
        };
        let mut client = async_imap::Client::new(stream);
        if config.tls != TlsMode::Starttls {
            greeting(&mut client, t).await?;
        }
        let mut session = match timed(t, async {
            Ok::<_, ImapError>(client.login(&config.username, password).await)
        })
        .await?
        {
            Ok(s) => s,
            Err((e, _)) => {
                return Err(ImapError::Login {
                    user: config.username.clone(),
                    message: e.to_string(),
                });
            }
        };
        // Capabilities change after login (MOVE, UIDPLUS appear then).
        let caps = timed(t, session.capabilities()).await?;
        let (can_idle, can_move, can_uidplus) = (
            caps.has_str("IDLE"),
            caps.has_str("MOVE"),
            caps.has_str("UIDPLUS"),
        );
        // Folders are configured with "/" between levels; servers use their
        // own delimiter ("." on Dovecot's Maildir++, "/" on Gmail).
        let delimiter = hierarchy_delimiter(&mut session, t).await?;
        let on_server = |path: &str| match delimiter.as_deref() {
            Some(d) if d != "/" => path.replace('/', d),
            _ => path.to_string(),
        };
        let processed_folder = on_server(&config.processed_folder);
        let quarantine_folder = on_server(&config.quarantine_folder);
        if config.after == AfterProcessing::Move {
            for folder in [&processed_folder, &quarantine_folder] {
                ensure_folder(&mut session, folder, t).await?;
            }
        }
        let mailbox = timed(t, session.select(on_server(&config.mailbox))).await?;
        Ok(Inbox {
            session,
            about: InboxFacts {
                config: config.clone(),
                processed_folder,
                quarantine_folder,
                can_idle,
                can_move,
                can_uidplus,
                state: MailboxState {
                    uid_validity: mailbox.uid_validity.unwrap_or(0),
                    exists: mailbox.exists,
                },
            },
        })
    }

    pub fn can_idle(&self) -> bool {
        self.about.can_idle
    }

    /// UIDs of the messages still waiting, oldest first.
    pub async fn waiting(&mut self) -> Result<Vec<u32>, ImapError> {
        let t = self.about.config.timeout;
        let query = match self.about.config.after {
            AfterProcessing::Move => "ALL".to_string(),
            AfterProcessing::Flag => {
                format!("UNKEYWORD {PROCESSED_KEYWORD} UNKEYWORD {QUARANTINED_KEYWORD}")
            }
        };
        let mut uids: Vec<u32> = timed(t, self.session.uid_search(query))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Fetches messages by UID without marking them \Seen. Messages over
    /// `max_message_bytes` come back with their header only; whole messages
    /// beyond `max_batch_bytes` in all are left for a later call.
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
        let t = self.about.config.timeout;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let mut arrived: Vec<(u32, String)> = Vec::new();
        let sizes: Vec<(u32, u64)> = {
            let stream = timed(
                t,
                self.session
                    .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE)"),
            )
            .await?;
            let fetches: Vec<_> = collect(t, stream).await?;
            for f in &fetches {
                if let (Some(uid), Some(date)) = (f.uid, f.internal_date()) {
                    arrived.push((uid, rfc3339_utc(date.timestamp())));
                }
            }
            fetches
                .iter()
                .filter_map(|f| Some((f.uid?, u64::from(f.size.unwrap_or(0)))))
                .collect()
        };
        let arrival = |uid: u32| {
            arrived
                .iter()
                .find(|(u, _)| *u == uid)
                .map(|(_, d)| d.clone())
        };
        let limit = self.about.config.max_message_bytes;
        let (big, small): (Vec<_>, Vec<_>) = sizes.iter().partition(|(_, size)| *size > limit);
        // Whole messages up to the batch's byte budget (always one); the rest
        // stay on the server, unacknowledged, for the next round.
        let budget = self.about.config.max_batch_bytes;
        let mut taken = 0u64;
        let (small, deferred): (Vec<_>, Vec<_>) = small.into_iter().partition(|(_, size)| {
            let first = taken == 0;
            taken = taken.saturating_add(*size);
            first || taken <= budget
        });
        let mut out = Vec::with_capacity(sizes.len());
        if !small.is_empty() {
            let set = uid_set(&small.iter().map(|(u, _)| *u).collect::<Vec<_>>());
            let stream = timed(t, self.session.uid_fetch(&set, "(UID BODY.PEEK[])")).await?;
            let fetches: Vec<_> = collect(t, stream).await?;
            for f in &fetches {
                let (Some(uid), Some(body)) = (f.uid, f.body()) else {
                    continue;
                };
                let size = small.iter().find(|(u, _)| *u == uid).map_or(0, |(_, s)| *s);
                out.push(Fetched {
                    uid,
                    size,
                    bytes: body.to_vec(),
                    oversized: false,
                    arrived: arrival(uid),
                });
            }
        }
        for (uid, size) in big {
            let stream = timed(
                t,
                self.session
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])"),
            )
            .await?;
            let fetches: Vec<_> = collect(t, stream).await?;
            let header = fetches
                .iter()
                .find_map(|f| f.header().map(<[u8]>::to_vec))
                .unwrap_or_default();
            out.push(Fetched {
                uid,
                size,
                bytes: header,
                oversized: true,
                arrived: arrival(uid),
            });
        }
        // async-imap ends a FETCH's stream at the tagged answer, whatever it
        // says: a NO looks like an empty result. Missing messages are an error,
        // not "nothing there", or the caller would ask again at once, forever.
        let asked = uids.len() - deferred.len();
        if out.len() < asked {
            let first = uids
                .iter()
                .find(|u| {
                    !out.iter().any(|f| f.uid == **u) && !deferred.iter().any(|(d, _)| d == *u)
                })
                .copied()
                .unwrap_or(0);
            return Err(ImapError::Incomplete {
                missing: asked - out.len(),
                asked,
                first,
            });
        }
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }

    /// Acknowledges messages whose outcome is committed: moves them to the
    /// processed or quarantine folder, or flags them.
    pub async fn acknowledge(&mut self, uids: &[u32], to: Disposition) -> Result<(), ImapError> {
        let t = self.about.config.timeout;
        if uids.is_empty() {
            return Ok(());
        }
        let set = uid_set(uids);
        match self.about.config.after {
            AfterProcessing::Flag => {
                let keyword = match to {
                    Disposition::Processed => PROCESSED_KEYWORD,
                    Disposition::Quarantined => QUARANTINED_KEYWORD,
                };
                let stream = timed(
                    t,
                    self.session
                        .uid_store(&set, format!("+FLAGS.SILENT (\\Seen {keyword})")),
                )
                .await?;
                collect(t, stream).await?;
            }
            AfterProcessing::Move => {
                let folder = match to {
                    Disposition::Processed => &self.about.processed_folder,
                    Disposition::Quarantined => &self.about.quarantine_folder,
                };
                if self.about.can_move {
                    timed(t, self.session.uid_mv(&set, folder)).await?;
                } else {
                    timed(t, self.session.uid_copy(&set, folder)).await?;
                    let stream =
                        timed(t, self.session.uid_store(&set, "+FLAGS.SILENT (\\Deleted)")).await?;
                    collect(t, stream).await?;
                    if self.about.can_uidplus {
                        let stream = timed(t, self.session.uid_expunge(&set)).await?;
                        collect(t, stream).await?;
                    } else {
                        let stream = timed(t, self.session.expunge()).await?;
                        collect(t, stream).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the connection is alive (and lets the server report news).
    pub async fn noop(&mut self) -> Result<(), ImapError> {
        let t = self.about.config.timeout;
        timed(t, self.session.noop()).await
    }

    /// Waits for the server to report a change (IDLE), for `max`, or until
    /// `stop` resolves. Returns the inbox, ready for commands again.
    pub async fn idle(
        self,
        max: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Inbox, ImapError> {
        let Inbox { session, about } = self;
        let t = about.config.timeout;
        let mut handle = session.idle();
        timed(t, handle.init()).await?;
        {
            let (wait, interrupt) = handle.wait_with_timeout(max);
            tokio::pin!(wait);
            tokio::pin!(stop);
            tokio::select! {
                r = &mut wait => { r?; }
                () = &mut stop => {
                    drop(interrupt);
                    wait.await?;
                }
            }
        }
        let session = timed(t, handle.done()).await?;
        Ok(Inbox { session, about })
    }

    pub async fn logout(mut self) {
        let t = self.about.config.timeout;
        let _ = timed(t, self.session.logout()).await;
    }
}

async fn greeting(
    client: &mut async_imap::Client<impl AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send>,
    t: Duration,
) -> Result<(), ImapError> {
    match timed(t, client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(ImapError::Closed),
    }
}

/// The server's hierarchy delimiter (`LIST "" ""`), if it has one.
async fn hierarchy_delimiter(
    session: &mut Session,
    t: Duration,
) -> Result<Option<String>, ImapError> {
    // (async-imap sends the pattern as given; `None` is the quoted empty string.)
    let stream = timed(t, session.list(Some(""), None)).await?;
    let names: Vec<_> = collect(t, stream).await?;
    Ok(names
        .first()
        .and_then(|n| n.delimiter())
        .map(str::to_string))
}

async fn ensure_folder(session: &mut Session, folder: &str, t: Duration) -> Result<(), ImapError> {
    let exists = {
        let pattern = format!("\"{}\"", folder.replace('\\', "\\\\").replace('"', "\\\""));
        let stream = timed(t, session.list(Some(""), Some(&pattern))).await?;
        let names: Vec<_> = collect(t, stream).await?;
        names.iter().any(|n| n.name() == folder)
    };
    if !exists {
        timed(t, session.create(folder)).await?;
    }
    Ok(())
}

async fn tls_connect(
    config: &ImapConfig,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ImapError> {
    let t = config.timeout;
    let tls = TlsConnector::from(Arc::new(client_config(config.ca_file.as_deref())?));
    let name = rustls::pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| ImapError::Tls(e.to_string()))?;
    timed(t, async {
        tls.connect(name, tcp)
            .await
            .map_err(|e| ImapError::Tls(e.to_string()))
    })
    .await
}

/// TLS settings: the system's trust roots, plus `ca_file` when given.
pub fn client_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, ImapError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| ImapError::Tls(format!("{}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| ImapError::Tls(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| ImapError::Tls(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn rfc3339_utc(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// "1,2,3,7" -> "1:3,7".
fn uid_set(uids: &[u32]) -> String {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(super::uid_set(&[7, 1, 2, 3, 9, 10]), "1:3,7,9:10");
        assert_eq!(super::uid_set(&[5]), "5");
    }
}
