//! Configuration: the user-facing, serde-shaped settings and their validation.
//!
//! Sources are layered with the `config` crate in this order, later winning:
//! built-in defaults, the file (`--config`, else `LEADMAIL_CONFIG`, else
//! `config/leadmail.toml` when it exists), then `LEADMAIL__SECTION__KEY`
//! environment variables. Every struct denies unknown fields so that a typo is
//! an error that names the key rather than a setting silently ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file read when neither `--config` nor `LEADMAIL_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/leadmail.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Syntax(String),
    #[error("invalid configuration: `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub parse: ParseConfig,
    #[serde(default)]
    pub brokerages: Vec<BrokerageConfig>,
    /// The server notifications are sent through; none means no notifications.
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub notify: NotifyConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub daemon: DaemonConfig,
}

/// How `leadmail run` instances share inboxes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// How long an inbox's lease lasts without renewal (renewed every third
    /// of it): when an instance dies, another takes its inboxes over after this.
    #[serde(default = "default_lease", with = "duration_text")]
    pub lease: std::time::Duration,
    /// This instance's name in leases and `leadmail status` (default: host:pid).
    pub instance: Option<String>,
    /// How long a notification being sent is held by its sender, so that
    /// no other instance sends it too; when the sender dies mid-send,
    /// another sends it after this.
    #[serde(default = "default_send_claim", with = "duration_text")]
    pub send_claim: std::time::Duration,
    /// Inboxes this instance takes while others could (e.g. 2 for 5 inboxes
    /// on 3 instances). Beyond it an inbox is taken only once it has gone
    /// unworked for another lease period, so none is ever left unworked
    /// (an inbox beyond every survivor's share moves after two lease periods).
    /// Default: no limit (the first instance up takes every free inbox).
    pub max_inboxes: Option<usize>,
}

const fn default_lease() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}

const fn default_send_claim() -> std::time::Duration {
    std::time::Duration::from_secs(120)
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            lease: default_lease(),
            instance: None,
            send_claim: default_send_claim(),
            max_inboxes: None,
        }
    }
}

/// The daemon's optional HTTP listener (`/metrics`, `/healthz`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on, e.g. "127.0.0.1:9187"; absent means no listener.
    pub listen: Option<std::net::SocketAddr>,
    /// How agents reach the listener, for the links in offer emails
    /// (e.g. "https://leads.acme.example"); defaults to http://<listen>.
    pub public_url: Option<String>,
    /// File holding the secret that signs offer links (first line). Preferred.
    pub offer_secret_file: Option<PathBuf>,
    /// Environment variable holding that secret.
    pub offer_secret_env: Option<String>,
}

impl HttpConfig {
    /// The secret that signs offer links, if one is configured.
    pub fn offer_secret(&self) -> Result<Option<String>, ConfigError> {
        if self.offer_secret_file.is_none() && self.offer_secret_env.is_none() {
            return Ok(None);
        }
        read_secret(
            self.offer_secret_file.as_deref(),
            self.offer_secret_env.as_deref(),
        )
        .map(Some)
    }

    /// The base of offer links.
    pub fn base_url(&self) -> Option<String> {
        match (&self.public_url, self.listen) {
            (Some(url), _) => Some(url.trim_end_matches('/').to_string()),
            (None, Some(addr)) => Some(format!("http://{addr}")),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default = "default_smtp_tls")]
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    /// Leave out for a relay that needs no login.
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// `Name <address>` the notifications come from.
    pub from: String,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

const fn default_smtp_port() -> u16 {
    587
}
const fn default_smtp_tls() -> TlsMode {
    TlsMode::Starttls
}

impl SmtpConfig {
    /// The password, when the server needs a login.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        if self.password_file.is_none() && self.password_env.is_none() {
            return Ok(None);
        }
        read_secret(self.password_file.as_deref(), self.password_env.as_deref()).map(Some)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Email the assigned agent about each new lead (needs `[smtp]`).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Also notify the owner when the owner is not the assigned user.
    #[serde(default)]
    pub owner_too: bool,
    /// A link to the lead in the CRM, `{id}` replaced by the lead id.
    pub lead_url_template: Option<String>,
    /// At most one quarantine digest per brokerage admin in this many minutes.
    #[serde(default = "default_digest_minutes")]
    pub quarantine_digest_minutes: u32,
}

const fn default_true() -> bool {
    true
}
const fn default_digest_minutes() -> u32 {
    60
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            enabled: true,
            owner_too: false,
            lead_url_template: None,
            quarantine_digest_minutes: default_digest_minutes(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` (relative paths are relative to the working
    /// directory) or `postgres://user@host:port/db?sslmode=require`.
    #[serde(default = "default_database_url")]
    pub url: String,
    /// PostgreSQL: file holding the password (first line). Without it (or
    /// `password_env`) the password comes from the URL, `PGPASSWORD` or a
    /// pgpass file, like every PostgreSQL client.
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
}

fn default_database_url() -> String {
    "sqlite://data/leadmail.db".to_string()
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            password_file: None,
            password_env: None,
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect with: `url` with the password from
    /// `password_file`/`password_env` put in (percent-encoded), when set.
    /// Never log it; `redact_url` is for showing.
    pub fn connect_url(&self) -> Result<String, ConfigError> {
        if self.password_file.is_none() && self.password_env.is_none() {
            return Ok(self.url.clone());
        }
        let password = read_secret(self.password_file.as_deref(), self.password_env.as_deref())?;
        let invalid = || ConfigError::Invalid {
            key: "database.url".to_string(),
            message: "a password file or variable needs a postgres://USER@HOST/DB URL".to_string(),
        };
        let mut url = url::Url::parse(&self.url).map_err(|_| invalid())?;
        if !matches!(url.scheme(), "postgres" | "postgresql") || url.username().is_empty() {
            return Err(invalid());
        }
        url.set_password(Some(&password)).map_err(|()| invalid())?;
        Ok(url.into())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParseConfig {
    /// ISO 3166 region used for phone numbers written without a country code.
    #[serde(default = "default_region")]
    pub default_region: String,
}

fn default_region() -> String {
    "US".to_string()
}

impl Default for ParseConfig {
    fn default() -> Self {
        ParseConfig {
            default_region: default_region(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerageConfig {
    /// Short stable identifier, used in the database and on the command line.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The brokerage's unique lead inbox address(es).
    pub lead_addresses: Vec<String>,
    /// Agent id that owns what no rule gives to anyone.
    pub default_owner: String,
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// How leads are routed (see `[brokerages.routing]`).
    #[serde(default)]
    pub routing: RoutingConfig,
    /// General rules, first match wins; no rules means round robin over every agent.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The lead inbox `leadmail run` watches (see `[brokerages.imap]`).
    pub imap: Option<ImapConfig>,
}

/// How to talk to a server: TLS from the first byte, upgraded with STARTTLS,
/// or plain (loopback only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Implicit,
    Starttls,
    None,
}

/// What to do with a message once its outcome is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AfterProcessing {
    /// Move it to `processed_folder` (or `quarantine_folder`).
    #[default]
    Move,
    /// Set \Seen and a keyword, and leave it where it is.
    Flag,
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    #[serde(default = "default_imap_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: TlsMode,
    /// An extra trust root (PEM), e.g. for a self-signed server.
    pub ca_file: Option<PathBuf>,
    pub username: String,
    /// File holding the password (first line). Preferred.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    #[serde(default = "default_processed_folder")]
    pub processed_folder: String,
    #[serde(default = "default_quarantine_folder")]
    pub quarantine_folder: String,
    #[serde(default)]
    pub after: AfterProcessing,
    /// Seconds (or "30s", "5m") between polls when the server has no IDLE; also a safety net.
    #[serde(default = "default_poll_interval", with = "duration_text")]
    pub poll_interval: std::time::Duration,
    /// Messages larger than this (as the server reports) are quarantined unread.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// Whole messages one batch may hold (at least one message is always
    /// taken): a backlog of large messages is worked a few at a time, so
    /// memory follows this, not the backlog.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: u64,
    /// A command (or a transfer that stops moving) taking longer than this
    /// drops the connection, which is then replaced.
    #[serde(default = "default_imap_timeout", with = "duration_text")]
    pub timeout: std::time::Duration,
}

// Hand-written so that nothing secret-adjacent is ever printed by `{:?}`.
impl std::fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

const fn default_imap_port() -> u16 {
    993
}
fn default_mailbox() -> String {
    "INBOX".to_string()
}
fn default_processed_folder() -> String {
    "Leads/Processed".to_string()
}
fn default_quarantine_folder() -> String {
    "Leads/Quarantine".to_string()
}
const fn default_poll_interval() -> std::time::Duration {
    std::time::Duration::from_secs(30)
}
const fn default_imap_timeout() -> std::time::Duration {
    std::time::Duration::from_secs(60)
}
const fn default_max_message_bytes() -> u64 {
    26_214_400
}
const fn default_max_batch_bytes() -> u64 {
    33_554_432
}

/// Durations written as seconds (`30`) or with a unit (`"30s"`, `"5m"`, `"2h"`, `"500ms"`).
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration such as \"30s\" or \"5m\""))?;
        Ok(match unit.trim() {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" => Duration::from_secs(n * 60),
            "h" => Duration::from_secs(n * 3600),
            other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
        })
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Duration::from_secs(n)),
            Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl ImapConfig {
    /// The password, from the file or the environment variable named in the configuration.
    pub fn password(&self) -> Result<String, ConfigError> {
        read_secret(self.password_file.as_deref(), self.password_env.as_deref())
    }
}

/// Reads a secret from a file (first line, trailing newline removed) or an
/// environment variable. Warns when the file is readable by others.
pub fn read_secret(file: Option<&Path>, env: Option<&str>) -> Result<String, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    message = "Password file is readable by other users; chmod 600 it.",
                    path = %path.display()
                );
            }
        }
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    if let Some(var) = env {
        return std::env::var(var).map_err(|_| ConfigError::Invalid {
            key: "password_env".to_string(),
            message: format!("environment variable {var} is not set"),
        });
    }
    Err(ConfigError::Invalid {
        key: "password_file".to_string(),
        message: "set password_file or password_env".to_string(),
    })
}

/// Who owns a lead: the agent it is routed to, or the brokerage's default owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OwnerPolicy {
    #[default]
    Agent,
    Brokerage,
}

/// A direct lead for a halted agent: deliver it to them anyway, or route it as general.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HaltedDirect {
    #[default]
    Deliver,
    Reroute,
}

/// Credit a forwarding agent always, or only when the brokerage's own mail
/// server authenticated the sender (DKIM or DMARC pass for their domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrustForwarder {
    #[default]
    Any,
    Authenticated,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Who owns a direct lead (its user is always the agent).
    #[serde(default)]
    pub direct_owner: OwnerPolicy,
    /// Who owns a general lead.
    #[serde(default)]
    pub general_owner: OwnerPolicy,
    #[serde(default)]
    pub halted_direct: HaltedDirect,
    #[serde(default)]
    pub trust_forwarder: TrustForwarder,
    /// The `authserv-id` of the brokerage's own mail server; Authentication-Results
    /// from any other host are ignored. Unset: only the topmost header counts.
    #[serde(default)]
    pub authserv_id: Option<String>,
    /// Repeat inquiries from the same person within this many days attach to the existing lead.
    #[serde(default = "default_dedupe_window_days")]
    pub dedupe_window_days: u32,
    /// Direct leads go straight to their agent (true), or are offered to that
    /// agent for `direct_period` and then routed by the general rules (false).
    #[serde(default = "default_true")]
    pub direct_auto_accept: bool,
    #[serde(default = "default_direct_period", with = "duration_text")]
    pub direct_period: std::time::Duration,
}

const fn default_direct_period() -> std::time::Duration {
    std::time::Duration::from_secs(24 * 3600)
}

const fn default_dedupe_window_days() -> u32 {
    90
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            direct_owner: OwnerPolicy::Agent,
            general_owner: OwnerPolicy::Agent,
            halted_direct: HaltedDirect::Deliver,
            trust_forwarder: TrustForwarder::Any,
            authserv_id: None,
            dedupe_window_days: default_dedupe_window_days(),
            direct_auto_accept: true,
            direct_period: default_direct_period(),
        }
    }
}

/// How a matching rule assigns the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Assign {
    #[default]
    RoundRobin,
    Agent,
    Pond,
    /// Offered to the pool's agents, who accept or decline (see `offer_mode`).
    Offer,
}

/// How an offered lead goes round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OfferMode {
    /// To the next agent of the rotation; on decline or expiry, to the one after.
    #[default]
    OneAtATime,
    /// To every eligible agent at once; the first to accept wins.
    AllAtOnce,
}

impl OfferMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OfferMode::OneAtATime => "one_at_a_time",
            OfferMode::AllAtOnce => "all_at_once",
        }
    }
}

/// A general-lead rule. Missing keys match anything.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub sources: Vec<String>,
    #[serde(default)]
    pub lead_types: Vec<crate::lead::LeadType>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    #[serde(default)]
    pub zips: Vec<String>,
    #[serde(default)]
    pub assign: Assign,
    /// Round-robin pool (agent ids); omitted means every agent with role "agent".
    #[serde(default)]
    pub pool: Vec<String>,
    /// The agent for `assign = "agent"`.
    pub agent: Option<String>,
    /// Only agents of these offices (`office` on the agent); empty means any.
    #[serde(default)]
    pub offices: Vec<String>,
    /// For `assign = "offer"`.
    #[serde(default)]
    pub offer_mode: OfferMode,
    /// For `assign = "offer"`: how long an agent has to accept.
    #[serde(default = "default_acceptance_period", with = "duration_text")]
    pub acceptance_period: std::time::Duration,
    /// Recorded on the lead when an offer is accepted.
    #[serde(default)]
    pub referral_fee_percent: u32,
}

const fn default_acceptance_period() -> std::time::Duration {
    std::time::Duration::from_secs(15 * 60)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub id: String,
    pub name: String,
    /// Addresses the agent sends and forwards from.
    #[serde(default)]
    pub emails: Vec<String>,
    #[serde(default = "default_role")]
    pub role: Role,
    /// The agent's personal lead addresses (mail to them is direct to the agent).
    #[serde(default)]
    pub lead_addresses: Vec<String>,
    /// Domains of the agent's own websites.
    #[serde(default)]
    pub websites: Vec<String>,
    /// MLS numbers of the agent's listings.
    #[serde(default)]
    pub listings: Vec<String>,
    /// Share in round-robin pools (0 takes the agent out of rotation).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// An inactive agent gets no new leads; their existing leads stay theirs.
    #[serde(default = "default_active")]
    pub active: bool,
    /// The agent's office, for rules with `offices`.
    pub office: Option<String>,
}

const fn default_weight() -> u32 {
    1
}

const fn default_active() -> bool {
    true
}

const fn default_role() -> Role {
    Role::Agent
}

impl BrokerageConfig {
    /// Whether `agent` is one of this brokerage's admins.
    pub fn is_admin(&self, agent: &str) -> bool {
        self.agents
            .iter()
            .any(|a| a.id == agent && a.role == Role::Admin)
    }
}

impl Config {
    /// Loads and validates the layered configuration.
    ///
    /// `explicit` is `--config`; when it is `None`, `LEADMAIL_CONFIG` and then
    /// [`DEFAULT_CONFIG_PATH`] are tried (the latter only when it exists).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env_path = std::env::var_os("LEADMAIL_CONFIG").map(PathBuf::from);
        let file = match (explicit, env_path) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(p),
            (None, None) => {
                let p = PathBuf::from(DEFAULT_CONFIG_PATH);
                p.exists().then_some(p)
            }
        };
        let text = match &file {
            Some(path) => Some(
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::from_sources(text.as_deref(), &env)
    }

    /// Builds the configuration from a file's text and an environment, both
    /// given explicitly so that tests need not touch the process environment.
    pub fn from_sources(
        file_text: Option<&str>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let env_map: std::collections::HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("LEADMAIL__"))
            .cloned()
            .collect();
        let mut builder = config::Config::builder()
            .set_default("database.url", default_database_url())
            .and_then(|b| b.set_default("parse.default_region", default_region()))
            .map_err(|e| ConfigError::Syntax(e.to_string()))?;
        if let Some(text) = file_text {
            builder = builder.add_source(config::File::from_str(text, config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("LEADMAIL")
                .prefix_separator("__")
                .separator("__")
                .source(Some(env_map)),
        );
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let mut cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Syntax(dotted_key_paths(&e.to_string())))?;
        cfg.normalize();
        cfg.validate()?;
        Ok(cfg)
    }

    /// Lower-cases and trims addresses so that every later comparison is exact.
    fn normalize(&mut self) {
        for b in &mut self.brokerages {
            for a in &mut b.lead_addresses {
                *a = a.trim().to_ascii_lowercase();
            }
            for agent in &mut b.agents {
                for e in agent
                    .emails
                    .iter_mut()
                    .chain(agent.lead_addresses.iter_mut())
                {
                    *e = e.trim().to_ascii_lowercase();
                }
                for w in &mut agent.websites {
                    *w = website_domain(w);
                }
                for l in &mut agent.listings {
                    *l = l.trim().to_ascii_uppercase();
                }
            }
        }
        self.parse.default_region = self.parse.default_region.trim().to_ascii_uppercase();
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(smtp) = &self.smtp {
            let loopback = matches!(smtp.host.as_str(), "localhost" | "127.0.0.1" | "::1")
                || smtp.host.starts_with("127.");
            if smtp.tls == TlsMode::None && !loopback {
                return Err(invalid(
                    "smtp.tls",
                    "tls = \"none\" is allowed only for a loopback host",
                ));
            }
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(invalid(
                    "smtp.from",
                    format!(
                        "{:?} is not an address such as \"Acme Leads <notify@acme.example>\"",
                        smtp.from
                    ),
                ));
            }
            if smtp.username.is_some()
                && smtp.password_file.is_none()
                && smtp.password_env.is_none()
            {
                return Err(invalid(
                    "smtp.password_file",
                    "a username needs password_file or password_env",
                ));
            }
        }
        if crate::store::Backend::of(&self.database.url).is_none() {
            return Err(invalid(
                "database.url",
                "expected sqlite://PATH (e.g. sqlite://data/leadmail.db) or postgres://USER@HOST/DB",
            ));
        }
        if self
            .parse
            .default_region
            .parse::<phonenumber::country::Id>()
            .is_err()
        {
            return Err(invalid(
                "parse.default_region",
                format!(
                    "{:?} is not an ISO 3166 region code such as \"US\"",
                    self.parse.default_region
                ),
            ));
        }
        let mut brokerage_ids = BTreeSet::new();
        let mut inbox_owner: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, b) in self.brokerages.iter().enumerate() {
            let key = |field: &str| format!("brokerages[{i}].{field}");
            check_id(&b.id).map_err(|m| invalid(key("id"), m))?;
            if !brokerage_ids.insert(b.id.as_str()) {
                return Err(invalid(
                    key("id"),
                    format!("duplicate brokerage id {:?}", b.id),
                ));
            }
            if b.lead_addresses.is_empty() {
                return Err(invalid(
                    key("lead_addresses"),
                    "at least one lead inbox address is required",
                ));
            }
            for (j, addr) in b.lead_addresses.iter().enumerate() {
                check_email(addr).map_err(|m| invalid(key(&format!("lead_addresses[{j}]")), m))?;
                if let Some(other) = inbox_owner.insert(addr, &b.id) {
                    return Err(invalid(
                        key(&format!("lead_addresses[{j}]")),
                        format!("{addr} is already the lead address of brokerage {other:?}"),
                    ));
                }
            }
            let mut agent_ids = BTreeSet::new();
            let mut agent_emails: BTreeMap<&str, &str> = BTreeMap::new();
            for (j, a) in b.agents.iter().enumerate() {
                let akey = |field: &str| key(&format!("agents[{j}].{field}"));
                check_id(&a.id).map_err(|m| invalid(akey("id"), m))?;
                if !agent_ids.insert(a.id.as_str()) {
                    return Err(invalid(
                        akey("id"),
                        format!("duplicate agent id {:?}", a.id),
                    ));
                }
                for (k, e) in a.emails.iter().enumerate() {
                    check_email(e).map_err(|m| invalid(akey(&format!("emails[{k}]")), m))?;
                    if let Some(other) = agent_emails.insert(e, &a.id) {
                        return Err(invalid(
                            akey(&format!("emails[{k}]")),
                            format!("{e} already belongs to agent {other:?}"),
                        ));
                    }
                }
            }
            for (j, a) in b.agents.iter().enumerate() {
                for (k, addr) in a.lead_addresses.iter().enumerate() {
                    let key = key(&format!("agents[{j}].lead_addresses[{k}]"));
                    check_email(addr).map_err(|m| invalid(&key, m))?;
                    if let Some(other) = inbox_owner.insert(addr, &b.id) {
                        return Err(invalid(
                            key,
                            format!("{addr} is already a lead address of brokerage {other:?}"),
                        ));
                    }
                }
            }
            for (j, r) in b.rules.iter().enumerate() {
                let rkey = |field: &str| key(&format!("rules[{j}].{field}"));
                if r.name.trim().is_empty() {
                    return Err(invalid(rkey("name"), "a rule needs a name"));
                }
                for (k, id) in r.pool.iter().enumerate() {
                    if !agent_ids.contains(id.as_str()) {
                        return Err(invalid(
                            rkey(&format!("pool[{k}]")),
                            format!("{id:?} is not one of this brokerage's agents"),
                        ));
                    }
                }
                match (r.assign, r.agent.as_deref()) {
                    (Assign::Agent, None) => {
                        return Err(invalid(rkey("agent"), "assign = \"agent\" needs an agent"));
                    }
                    (_, Some(id)) if !agent_ids.contains(id) => {
                        return Err(invalid(
                            rkey("agent"),
                            format!("{id:?} is not one of this brokerage's agents"),
                        ));
                    }
                    _ => {}
                }
                if let (Some(lo), Some(hi)) = (r.min_price, r.max_price)
                    && lo > hi
                {
                    return Err(invalid(rkey("min_price"), "min_price is above max_price"));
                }
            }
            if let Some(imap) = &b.imap {
                let ikey = |field: &str| key(&format!("imap.{field}"));
                if imap.host.trim().is_empty() {
                    return Err(invalid(
                        ikey("host"),
                        "the IMAP server's host name is required",
                    ));
                }
                if imap.password_file.is_none() && imap.password_env.is_none() {
                    return Err(invalid(
                        ikey("password_file"),
                        "set password_file or password_env (never a password in the file)",
                    ));
                }
                let loopback = matches!(imap.host.as_str(), "localhost" | "127.0.0.1" | "::1")
                    || imap.host.starts_with("127.");
                if imap.tls == TlsMode::None && !loopback {
                    return Err(invalid(
                        ikey("tls"),
                        "tls = \"none\" is allowed only for a loopback host",
                    ));
                }
                if imap.processed_folder == imap.mailbox || imap.quarantine_folder == imap.mailbox {
                    return Err(invalid(
                        ikey("processed_folder"),
                        "the processed and quarantine folders must differ from the mailbox",
                    ));
                }
            }
            if !agent_ids.contains(b.default_owner.as_str()) {
                return Err(invalid(
                    key("default_owner"),
                    format!(
                        "{:?} is not one of this brokerage's agents",
                        b.default_owner
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn brokerage(&self, id: &str) -> Option<&BrokerageConfig> {
        self.brokerages.iter().find(|b| b.id == id)
    }

    /// The configuration as TOML with secrets replaced, for `check-config`.
    pub fn to_redacted_toml(&self) -> Result<String, ConfigError> {
        let mut shown = self.clone();
        shown.database.url = redact_url(&shown.database.url);
        toml::to_string_pretty(&shown).map_err(|e| ConfigError::Syntax(e.to_string()))
    }
}

/// The config crate writes nested keys as `brokerages[0]agents[1]role`;
/// people (and our own messages) write `brokerages[0].agents[1].role`.
fn dotted_key_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ']' && chars.peek().is_some_and(|n| n.is_ascii_alphabetic()) {
            out.push('.');
        }
    }
    out
}

/// Hides the password part of a `scheme://user:password@host` URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:REDACTED@{host}"),
        None => url.to_string(),
    }
}

/// "https://www.JaneSmithHomes.example/about" -> "janesmithhomes.example".
pub fn website_domain(site: &str) -> String {
    let s = site.trim().to_ascii_lowercase();
    let s = s.split("://").nth(1).unwrap_or(&s).to_string();
    let host = s.split(['/', '?', '#', ':']).next().unwrap_or("");
    host.strip_prefix("www.").unwrap_or(host).to_string()
}

fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid id (1-64 characters of a-z, 0-9, '-' and '_')"
        ))
    }
}

fn check_email(addr: &str) -> Result<(), String> {
    match addr.split_once('@') {
        Some((local, domain)) if !local.is_empty() && domain.contains('.') => Ok(()),
        _ => Err(format!("{addr:?} is not an email address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[brokerages]]
id = "acme"
name = "Acme"
lead_addresses = ["Leads@AcmeRealty.example"]
default_owner = "amy"
  [[brokerages.agents]]
  id = "amy"
  name = "Amy"
  emails = ["amy@acmerealty.example"]
  role = "admin"
"#;

    fn err(text: &str) -> String {
        Config::from_sources(Some(text), &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn loads_and_normalizes() {
        let cfg = Config::from_sources(Some(GOOD), &[]).unwrap();
        assert_eq!(
            cfg.brokerages[0].lead_addresses,
            ["leads@acmerealty.example"]
        );
        assert_eq!(cfg.database.url, "sqlite://data/leadmail.db");
        assert_eq!(cfg.brokerages[0].agents[0].role, Role::Admin);
    }

    #[test]
    fn environment_overrides_file() {
        let env = vec![(
            "LEADMAIL__DATABASE__URL".to_string(),
            "sqlite:///tmp/x.db".to_string(),
        )];
        let cfg = Config::from_sources(Some(GOOD), &env).unwrap();
        assert_eq!(cfg.database.url, "sqlite:///tmp/x.db");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err("[database]\nurll = \"sqlite://x\"\n");
        assert!(e.contains("urll"), "{e}");
    }

    #[test]
    fn bad_role_is_named() {
        let e = err(&GOOD.replace("\"admin\"", "\"boss\""));
        assert!(e.contains("brokerages[0].agents[0].role"), "{e}");
    }

    #[test]
    fn missing_field_is_named() {
        let e = err(&GOOD.replace("id = \"acme\"", ""));
        assert!(e.contains("brokerages[0].id"), "{e}");
    }

    #[test]
    fn default_owner_must_be_an_agent() {
        let e = err(&GOOD.replace("default_owner = \"amy\"", "default_owner = \"zed\""));
        assert!(e.contains("brokerages[0].default_owner"), "{e}");
    }

    #[test]
    fn duplicate_agent_email_is_refused() {
        let text = format!(
            "{GOOD}\n  [[brokerages.agents]]\n  id = \"bob\"\n  name = \"Bob\"\n  emails = [\"AMY@acmerealty.example\"]\n"
        );
        let e = err(&text);
        assert!(e.contains("brokerages[0].agents[1].emails[0]"), "{e}");
    }

    #[test]
    fn redacts_url_password() {
        assert_eq!(
            redact_url("postgres://lead:hunter2@db/leads"),
            "postgres://lead:REDACTED@db/leads"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[test]
    fn database_password_file_goes_into_the_url_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "p@ss:w/rd\n").unwrap();
        let db = DatabaseConfig {
            url: "postgres://lead@db.example:5433/leads?sslmode=require".to_string(),
            password_file: Some(file.clone()),
            password_env: None,
        };
        assert_eq!(
            db.connect_url().unwrap(),
            "postgres://lead:p%40ss%3Aw%2Frd@db.example:5433/leads?sslmode=require"
        );
        let sqlite = DatabaseConfig {
            url: "sqlite://data/x.db".to_string(),
            ..db
        };
        assert!(
            sqlite.connect_url().is_err(),
            "a password for SQLite is a mistake"
        );
        assert_eq!(
            DatabaseConfig::default().connect_url().unwrap(),
            "sqlite://data/leadmail.db"
        );
    }
}
