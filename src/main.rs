//! The `leadmail` command line: argument parsing, output formatting and exit
//! codes. All behaviour lives in the library; this file only wires it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use leadmail::admin;
use leadmail::config::Config;
use leadmail::parse::{self, ParseOptions};
use leadmail::pipeline::{IngestReport, OfferActError, OfferAction, Pipeline};
use leadmail::source::file;
use leadmail::store::{Assignee, Store};

#[derive(Parser)]
#[command(
    name = "leadmail",
    version,
    about = "Turns lead emails into routed, stored leads for real-estate brokerages."
)]
struct Cli {
    /// Configuration file (default: $LEADMAIL_CONFIG, else config/leadmail.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse one message and print what it holds as one JSON object.
    Parse {
        /// A message file, or - for standard input.
        input: PathBuf,
    },
    /// Parse, route and store messages: files, directories of *.eml, or - for stdin.
    Ingest {
        /// Treat every message as sent to this brokerage (by id).
        #[arg(long, value_name = "ID")]
        brokerage: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[arg(required = true, value_name = "FILE|DIR|-")]
        inputs: Vec<PathBuf>,
    },
    /// Inspect stored leads.
    Leads {
        #[command(subcommand)]
        command: LeadsCommand,
    },
    /// Watch every brokerage's IMAP inbox and turn what arrives into leads.
    Run {
        /// Drain every inbox once and exit (for cron and tests).
        #[arg(long)]
        once: bool,
    },
    /// Per inbox: connected, last success, processed, oldest waiting, quarantined, last error.
    Status {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List or replay quarantined messages.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Notification tools.
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Halt, resume and list agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Import a brokerage's listings (for routing leads on a listing to its agent).
    Listings {
        #[command(subcommand)]
        command: ListingsCommand,
    },
    /// Lead offers: list them, accept or decline one.
    Offers {
        #[command(subcommand)]
        command: OffersCommand,
    },
    /// Per brokerage: who is up next in each pool, open offers with time left,
    /// today's leads by source and agent, median time from offer to acceptance.
    Dashboard {
        #[arg(long, value_name = "ID")]
        brokerage: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig,
    /// Create or upgrade the database schema.
    Migrate,
}

#[derive(Subcommand)]
enum AgentsCommand {
    /// Stop brokerage-generated leads for an agent (vacation, leave). Admins only.
    Halt {
        /// BROKERAGE/AGENT
        target: String,
        #[arg(long)]
        reason: String,
        /// When the halt ends on its own (RFC 3339, e.g. 2026-12-24T09:00:00Z).
        #[arg(long)]
        until: Option<String>,
        /// The admin doing it.
        #[arg(long)]
        by: String,
    },
    /// End an agent's halt. Admins only.
    Resume {
        /// BROKERAGE/AGENT
        target: String,
        #[arg(long)]
        by: String,
    },
    /// Mark an agent out of office: no general leads, offers or notifications
    /// meanwhile; direct leads go to the delegate. The agent or an admin.
    Away {
        /// BROKERAGE/AGENT
        target: String,
        /// The colleague who works the agent's direct leads meanwhile.
        #[arg(long, value_name = "AGENT")]
        delegate: Option<String>,
        /// When the agent is back on their own (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Who is doing it (default: the agent themself).
        #[arg(long)]
        by: Option<String>,
    },
    /// End an agent's out-of-office. The agent or an admin.
    Back {
        /// BROKERAGE/AGENT
        target: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Every agent, and who is halted or away, why and until when.
    List {
        #[arg(long, value_name = "ID")]
        brokerage: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum OffersCommand {
    /// Offers, open ones first by default.
    List {
        #[arg(long, value_name = "ID")]
        brokerage: Option<String>,
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// Also decided offers (accepted, declined, expired, taken).
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Accept an offer: the agent becomes the lead's owner and user.
    Accept {
        offer: i64,
        /// The agent the offer was made to.
        #[arg(long, value_name = "AGENT")]
        by: String,
    },
    /// Decline an offer: it goes to the next agent (or, after a full pass, the default owner).
    Decline {
        offer: i64,
        #[arg(long, value_name = "AGENT")]
        by: String,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Send a test message to an agent, to check the SMTP settings.
    Test {
        /// AGENT or BROKERAGE/AGENT
        agent: String,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Messages kept in quarantine, with the reason.
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Run quarantined messages through the pipeline again (after a fix).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["id", "all"])))]
    Replay {
        /// The quarantined message's id (see `quarantine list`).
        id: Option<i64>,
        /// Every quarantined message.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

#[derive(Subcommand)]
enum ListingsCommand {
    /// Replace a brokerage's imported listings with a CSV file (mls_number,address,agent).
    Import { brokerage: String, file: PathBuf },
}

#[derive(Subcommand)]
enum LeadsCommand {
    /// Change a lead's owner or assigned user; the note is required.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["user", "owner"])))]
    Reassign {
        lead: i64,
        /// The new assigned user.
        #[arg(long, value_name = "AGENT")]
        user: Option<String>,
        /// The new owner.
        #[arg(long, value_name = "AGENT")]
        owner: Option<String>,
        /// Why (recorded in the lead's history).
        #[arg(long, value_name = "TEXT")]
        note: String,
        /// Who is doing it (an admin or the lead's owner).
        #[arg(long, value_name = "ACTOR")]
        by: String,
    },
    /// List stored leads.
    List {
        #[arg(long, value_name = "ID")]
        brokerage: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Show one lead with its owner, user, history and routing trace.
    Show {
        id: i64,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("leadmail: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("leadmail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // The protocol libraries trace every line on the wire, LOGIN and AUTH
    // (passwords) included: capped whatever RUST_LOG says.
    for wire in ["async_imap=info", "lettre=info"] {
        if let Ok(directive) = wire.parse() {
            filter = filter.add_directive(directive);
        }
    }
    // Colours only on a terminal: journald and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Parse { input } => cmd_parse(cli.config.as_deref(), &input),
        Command::CheckConfig => {
            let config = Config::load(cli.config.as_deref())?;
            print!("{}", config.to_redacted_toml()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            store.close().await;
            println!(
                "database is up to date: {}",
                leadmail::config::redact_url(&config.database.url)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            brokerage,
            format,
            inputs,
        } => cmd_ingest(cli.config.as_deref(), brokerage.as_deref(), format, &inputs).await,
        Command::Run { once } => cmd_run(cli.config.as_deref(), once).await,
        Command::Status { format } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            let ids: Vec<String> = config
                .brokerages
                .iter()
                .filter(|b| b.imap.is_some())
                .map(|b| b.id.clone())
                .collect();
            let statuses = store.inbox_statuses(&ids).await?;
            let outbox = store.outbox_status().await?;
            store.close().await;
            match format {
                Format::Json => {
                    for s in &statuses {
                        println!("{}", serde_json::to_string(s)?);
                    }
                    println!("{}", serde_json::json!({ "outbox": outbox }));
                }
                Format::Table => {
                    print_status_table(&statuses);
                    println!(
                        "\nnotifications: {} sent, {} pending, {} failed{}",
                        outbox.sent,
                        outbox.pending,
                        outbox.failed,
                        outbox
                            .last_error
                            .map(|e| format!(" (last error: {e})"))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Quarantine { command } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            match command {
                QuarantineCommand::List { format } => {
                    let list = store.quarantined().await?;
                    match format {
                        Format::Json => {
                            for q in &list {
                                println!("{}", serde_json::to_string(q)?);
                            }
                        }
                        Format::Table => {
                            let rows: Vec<Vec<String>> = list
                                .iter()
                                .map(|q| {
                                    vec![
                                        q.id.to_string(),
                                        q.brokerage.clone().unwrap_or_else(|| "-".into()),
                                        q.received_at.clone(),
                                        q.reason.clone().unwrap_or_default(),
                                        q.origin.clone(),
                                    ]
                                })
                                .collect();
                            print_table(
                                &["ID", "BROKERAGE", "RECEIVED", "REASON", "ORIGIN"],
                                &rows,
                            );
                        }
                    }
                    store.close().await;
                    Ok(ExitCode::SUCCESS)
                }
                QuarantineCommand::Replay { id, all, format } => {
                    let ids: Vec<i64> = if all {
                        store.quarantined().await?.iter().map(|q| q.id).collect()
                    } else {
                        id.into_iter().collect()
                    };
                    let pipeline = Pipeline::new(config, store);
                    let mut reports = Vec::new();
                    for id in ids {
                        let report = pipeline.replay(id).await?;
                        if format == Format::Json {
                            println!("{}", serde_json::to_string(&report)?);
                        }
                        reports.push(report);
                    }
                    if format == Format::Table {
                        print_ingest_table(&reports);
                    }
                    pipeline.store().close().await;
                    Ok(ExitCode::SUCCESS)
                }
            }
        }
        Command::Notify {
            command: NotifyCommand::Test { agent },
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let Some(smtp) = config.smtp.clone() else {
                bail!("no [smtp] section in the configuration: nothing to send with");
            };
            let (brokerage, agent) = match agent.split_once('/') {
                Some(_) => {
                    let (b, a) = admin::target(&config, &agent)?;
                    (b.clone(), a)
                }
                None => {
                    let b = config
                        .brokerages
                        .iter()
                        .find(|b| b.agents.iter().any(|a| a.id == agent))
                        .ok_or_else(|| anyhow::anyhow!("no agent {agent:?} in any brokerage"))?;
                    (b.clone(), agent)
                }
            };
            let a = brokerage
                .agents
                .iter()
                .find(|a| a.id == agent)
                .ok_or_else(|| anyhow::anyhow!("no agent {agent:?}"))?;
            let Some(address) = a.emails.first() else {
                bail!("agent {agent:?} has no email address to notify");
            };
            let store = open_store(&config).await?;
            let r = leadmail::notify::render::test_message(&a.name);
            let stamp = leadmail::store::now();
            store
                .queue_notification(&leadmail::store::NewNotification {
                    brokerage_id: brokerage.id.clone(),
                    lead_id: None,
                    kind: "test",
                    agent_id: a.id.clone(),
                    recipient: address.clone(),
                    reply_to: None,
                    subject: r.subject,
                    body_text: r.text,
                    body_html: r.html,
                    message_id: format!(
                        "leadmail.test.{}.{}@{}",
                        a.id,
                        stamp.replace([':', '.'], ""),
                        leadmail::notify::from_domain(&config)
                    ),
                })
                .await?;
            let sender =
                leadmail::notify::sender::Sender::new(&smtp, &config.daemon, store.clone())?;
            let pending = sender.flush(std::time::Duration::from_secs(30)).await?;
            let outbox = store.outbox_status().await?;
            store.close().await;
            if pending > 0 || outbox.last_error.is_some() && outbox.sent == 0 {
                bail!(
                    "the test message to {address} was not sent: {}",
                    outbox.last_error.unwrap_or_else(|| "still pending".into())
                );
            }
            println!("test message sent to {address}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents { command } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            match command {
                AgentsCommand::Halt {
                    target,
                    reason,
                    until,
                    by,
                } => {
                    let h = admin::halt(&store, &config, &target, &reason, until.as_deref(), &by)
                        .await?;
                    println!(
                        "{target} halted by {by}: {}{}",
                        h.reason,
                        h.until.map(|u| format!(" (until {u})")).unwrap_or_default()
                    );
                }
                AgentsCommand::Resume { target, by } => {
                    if admin::resume(&store, &config, &target, &by).await? {
                        println!("{target} resumed by {by}");
                    } else {
                        println!("{target} was not halted");
                    }
                }
                AgentsCommand::Away {
                    target,
                    delegate,
                    until,
                    by,
                } => {
                    let by = by.unwrap_or_else(|| {
                        target.split_once('/').map_or("", |(_, a)| a).to_string()
                    });
                    let w = admin::away(
                        &store,
                        &config,
                        &target,
                        delegate.as_deref(),
                        until.as_deref(),
                        &by,
                    )
                    .await?;
                    println!(
                        "{target} is out of office{}{}",
                        w.delegate
                            .map(|d| format!("; direct leads go to {d}"))
                            .unwrap_or_default(),
                        w.until.map(|u| format!(" (until {u})")).unwrap_or_default()
                    );
                }
                AgentsCommand::Back { target, by } => {
                    let by = by.unwrap_or_else(|| {
                        target.split_once('/').map_or("", |(_, a)| a).to_string()
                    });
                    if admin::back(&store, &config, &target, &by).await? {
                        println!("{target} is back");
                    } else {
                        println!("{target} was not out of office");
                    }
                }
                AgentsCommand::List { brokerage, format } => {
                    let agents = admin::agents(&store, &config, brokerage.as_deref()).await?;
                    match format {
                        Format::Json => {
                            for a in &agents {
                                println!("{}", serde_json::to_string(a)?);
                            }
                        }
                        Format::Table => print_agents_table(&agents),
                    }
                }
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard { brokerage, format } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            let boards = admin::dashboard(&store, &config, brokerage.as_deref()).await?;
            store.close().await;
            match format {
                Format::Json => {
                    for b in &boards {
                        println!("{}", serde_json::to_string(b)?);
                    }
                }
                Format::Table => boards.iter().for_each(print_dashboard),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Offers { command } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            let code = match command {
                OffersCommand::List {
                    brokerage,
                    agent,
                    all,
                    format,
                } => {
                    let offers = store
                        .list_offers(brokerage.as_deref(), agent.as_deref(), !all)
                        .await?;
                    match format {
                        Format::Json => {
                            for o in &offers {
                                println!("{}", serde_json::to_string(o)?);
                            }
                        }
                        Format::Table => print_offers_table(&offers),
                    }
                    ExitCode::SUCCESS
                }
                OffersCommand::Accept { offer, by } => {
                    act_on_offer(&config, &store, offer, &by, OfferAction::Accept).await?
                }
                OffersCommand::Decline { offer, by } => {
                    act_on_offer(&config, &store, offer, &by, OfferAction::Decline).await?
                }
            };
            store.close().await;
            Ok(code)
        }
        Command::Listings {
            command: ListingsCommand::Import { brokerage, file },
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let b = config
                .brokerage(&brokerage)
                .ok_or_else(|| admin::AdminError::UnknownBrokerage(brokerage.clone()))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let rows = admin::parse_listings_csv(&text, b)
                .with_context(|| format!("{}", file.display()))?;
            let store = open_store(&config).await?;
            store.import_listings(&b.id, &rows).await?;
            store.close().await;
            println!("imported {} listings for {}", rows.len(), b.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Leads { command } => {
            let config = Config::load(cli.config.as_deref())?;
            let store = open_store(&config).await?;
            let code = match command {
                LeadsCommand::Reassign {
                    lead,
                    user,
                    owner,
                    note,
                    by,
                } => {
                    let (which, to) = match (user, owner) {
                        (Some(u), _) => (Assignee::User, u),
                        (None, Some(o)) => (Assignee::Owner, o),
                        (None, None) => bail!("give --user or --owner"),
                    };
                    let from =
                        admin::reassign(&store, &config, lead, which, &to, &note, &by).await?;
                    let what = if which == Assignee::User {
                        "user"
                    } else {
                        "owner"
                    };
                    println!("lead {lead}: {what} {from} -> {to} ({note})");
                    ExitCode::SUCCESS
                }
                LeadsCommand::List { brokerage, format } => {
                    let leads = store.list_leads(brokerage.as_deref()).await?;
                    match format {
                        Format::Json => {
                            for l in &leads {
                                println!("{}", serde_json::to_string(l)?);
                            }
                        }
                        Format::Table => print_lead_table(&leads),
                    }
                    ExitCode::SUCCESS
                }
                LeadsCommand::Show { id, format } => {
                    let Some(lead) = store.lead(id).await? else {
                        bail!("no lead with id {id}");
                    };
                    let history = store.lead_history(id).await?;
                    let trace = store.lead_trace(id).await?;
                    let mut value = serde_json::to_value(&lead)?;
                    value["history"] = serde_json::to_value(&history)?;
                    value["trace"] = trace.unwrap_or(serde_json::Value::Null);
                    match format {
                        Format::Json => println!("{}", serde_json::to_string_pretty(&value)?),
                        Format::Table => print_lead_detail(&lead, &history),
                    }
                    ExitCode::SUCCESS
                }
            };
            store.close().await;
            Ok(code)
        }
    }
}

fn cmd_parse(config: Option<&std::path::Path>, input: &std::path::Path) -> Result<ExitCode> {
    // The configuration only supplies the phone region; parsing works without one.
    let options = match Config::load(config) {
        Ok(c) => ParseOptions::from_config(&c.parse),
        Err(_) if config.is_none() => ParseOptions::default(),
        Err(e) => return Err(e.into()),
    };
    let inputs = file::expand(&[input.to_path_buf()])?;
    let Some(first) = inputs.first() else {
        bail!("{} holds no .eml files", input.display());
    };
    let raw = file::read(first)?;
    let parsed = parse::parse(&raw.bytes, &options);
    println!("{}", serde_json::to_string_pretty(&parsed)?);
    Ok(ExitCode::SUCCESS)
}

async fn cmd_ingest(
    config: Option<&std::path::Path>,
    brokerage: Option<&str>,
    format: Format,
    inputs: &[PathBuf],
) -> Result<ExitCode> {
    let config = Config::load(config)?;
    if let Some(id) = brokerage
        && config.brokerage(id).is_none()
    {
        bail!("--brokerage {id}: no such brokerage in the configuration");
    }
    let store = open_store(&config).await?;
    let pipeline = Pipeline::new(config, store);
    let inputs = file::expand(inputs)?;
    let mut failures = 0usize;
    let mut reports = Vec::new();
    let stdout = std::io::stdout();
    for input in &inputs {
        let raw = match file::read(input) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("leadmail: {e}");
                failures += 1;
                continue;
            }
        };
        let report = pipeline.ingest(&raw, brokerage).await?;
        if format == Format::Json {
            let mut out = stdout.lock();
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
        reports.push(report);
    }
    if format == Format::Table {
        print_ingest_table(&reports);
    }
    deliver_notifications(&pipeline).await?;
    pipeline.store().close().await;
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Delivers the notifications a command queued (bounded; the rest stay in
/// the outbox for the next `run`).
async fn deliver_notifications(pipeline: &Pipeline) -> Result<()> {
    let config = pipeline.config();
    let Some(smtp) = config.smtp.as_ref().filter(|_| config.notify.enabled) else {
        return Ok(());
    };
    let sender =
        leadmail::notify::sender::Sender::new(smtp, &config.daemon, pipeline.store().clone())?;
    let pending = sender.flush(std::time::Duration::from_secs(30)).await?;
    if pending > 0 {
        eprintln!(
            "leadmail: {pending} notifications not sent yet; they stay queued for the next `leadmail run`"
        );
    }
    Ok(())
}

/// `leadmail run`: the daemon, until SIGTERM/SIGINT (or once).
async fn cmd_run(config_path: Option<&std::path::Path>, once: bool) -> Result<ExitCode> {
    let config = Config::load(config_path)?;
    let store = open_store(&config).await?;
    let pipeline = std::sync::Arc::new(Pipeline::new(config.clone(), store));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!(message = "Shutting down: finishing the messages in hand.");
        let _ = stop_tx.send(true);
    });
    let watchdog = tokio::spawn(systemd_watchdog(pipeline.clone(), stop_rx.clone()));
    let offer_clock = tokio::spawn(leadmail::daemon::offer_clock(
        pipeline.clone(),
        stop_rx.clone(),
    ));
    // Stopped after the inboxes (also with --once), so /healthz answers to the end.
    let (http_stop, http_stop_rx) = tokio::sync::watch::channel(false);
    let http_task = match config.http.listen {
        Some(addr) => {
            let listener = leadmail::http::bind(addr).await?;
            tracing::info!(message = "HTTP listener up (/metrics, /healthz, /offers).", %addr);
            Some(tokio::spawn(leadmail::http::serve(
                listener,
                pipeline.clone(),
                http_stop_rx,
            )))
        }
        None => None,
    };
    let sender = match &config.smtp {
        Some(smtp) if config.notify.enabled => Some(
            leadmail::notify::sender::Sender::new(smtp, &config.daemon, pipeline.store().clone())?
                .with_metrics(pipeline.metrics().clone()),
        ),
        _ => None,
    };
    let has_inboxes = config.brokerages.iter().any(|b| b.imap.is_some());
    if !has_inboxes {
        tracing::warn!(
            message = "No brokerage has an [brokerages.imap] inbox: only delivering notifications."
        );
    }
    // The daemon delivers continuously; --once delivers after the drain.
    let (sender_task, sender_stop, once_sender) = match sender {
        Some(sender) if !once => {
            let (tx, rx) = tokio::sync::watch::channel(false);
            let task = tokio::spawn(sender.run(
                std::sync::Arc::new(config.clone()),
                pipeline.outbox_signal(),
                rx,
            ));
            (Some(task), Some(tx), None)
        }
        other => (None, None, other),
    };
    let mut stop_for_idle = stop_rx.clone();
    if !has_inboxes && !once {
        // Nothing to watch: keep delivering until told to stop.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let _ = stop_for_idle.wait_for(|s| *s).await;
    }
    let report = leadmail::daemon::run(
        &config,
        pipeline.clone(),
        leadmail::daemon::RunOptions { once },
        stop_rx,
        |inboxes| {
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&format!("watching {inboxes} inboxes")),
            ]);
        },
    )
    .await?;
    watchdog.abort();
    offer_clock.abort();
    if once {
        // Deadlines that passed while nobody was running.
        pipeline.expire_offers().await?;
    }
    let _ = http_stop.send(true);
    if let Some(task) = http_task
        && let Ok(Err(e)) = task.await
    {
        tracing::warn!(message = "HTTP listener stopped.", error = %e);
    }
    if let Some(stop) = sender_stop {
        let _ = stop.send(true);
    }
    if let Some(task) = sender_task {
        let _ = task.await;
    }
    if let Some(sender) = once_sender {
        leadmail::notify::sender::queue_digests(&config, pipeline.store()).await?;
        let pending = sender.flush(std::time::Duration::from_secs(30)).await?;
        if pending > 0 {
            eprintln!("leadmail: {pending} notifications not sent yet; they stay queued");
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    pipeline.store().close().await;
    for failure in &report.failures {
        eprintln!("leadmail: {failure}");
    }
    if once {
        println!("processed {} messages", report.processed);
    }
    Ok(if report.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Pings systemd's watchdog and reports progress, while the daemon runs.
async fn systemd_watchdog(
    pipeline: std::sync::Arc<Pipeline>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let interval =
        sd_notify::watchdog_enabled().map_or(std::time::Duration::from_secs(10), |d| d / 2);
    loop {
        tokio::time::sleep(interval).await;
        if *stop.borrow() {
            return;
        }
        let processed: i64 = match pipeline.store().message_counts().await {
            Ok(counts) => counts.iter().map(|(_, n)| n).sum(),
            Err(_) => continue,
        };
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Watchdog,
            sd_notify::NotifyState::Status(&format!("{processed} messages stored")),
        ]);
    }
}

fn print_status_table(statuses: &[leadmail::store::InboxStatus]) {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.brokerage.clone(),
                s.lease
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |l| l.holder.clone()),
                if s.connected { "yes" } else { "no" }.to_string(),
                s.last_success.clone().unwrap_or_else(|| "never".into()),
                s.processed.to_string(),
                s.oldest_waiting.clone().unwrap_or_else(|| "-".into()),
                s.quarantined.to_string(),
                s.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "INBOX",
            "WORKED BY",
            "CONNECTED",
            "LAST SUCCESS",
            "PROCESSED",
            "OLDEST WAITING",
            "QUARANTINED",
            "LAST ERROR",
        ],
        &rows,
    );
}

/// Opens the store and mirrors the configured directory into it.
async fn open_store(config: &Config) -> Result<Store> {
    let url = config.database.connect_url()?;
    let store = Store::open(&url).await.with_context(|| {
        format!(
            "opening {}",
            leadmail::config::redact_url(&config.database.url)
        )
    })?;
    store.sync_directory(&config.brokerages).await?;
    Ok(store)
}

/// `offers accept|decline`: refused politely when the offer is closed or someone else's.
async fn act_on_offer(
    config: &Config,
    store: &Store,
    offer: i64,
    by: &str,
    action: OfferAction,
) -> Result<ExitCode> {
    let pipeline = Pipeline::new(config.clone(), store.clone());
    match pipeline.act_on_offer(offer, by, action).await {
        Ok(outcome) => {
            println!("offer {offer} {}: {}", outcome.state, outcome.summary);
            deliver_notifications(&pipeline).await?;
            Ok(ExitCode::SUCCESS)
        }
        Err(OfferActError::Offer(e)) => {
            eprintln!("leadmail: {e}");
            Ok(ExitCode::from(3))
        }
        Err(OfferActError::Pipeline(e)) => Err(e.into()),
    }
}

fn print_dashboard(d: &admin::Dashboard) {
    println!("== {} ==", d.brokerage);
    println!("\nUp next");
    let pools: Vec<Vec<String>> = d
        .pools
        .iter()
        .map(|p| {
            vec![
                p.rule.clone(),
                serde_json::to_value(p.assign)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                p.next.clone().unwrap_or_else(|| "nobody available".into()),
            ]
        })
        .collect();
    print_table(&["RULE", "ASSIGN", "NEXT"], &pools);
    println!("\nOpen offers");
    let offers: Vec<Vec<String>> = d
        .open_offers
        .iter()
        .map(|o| {
            vec![
                o.offer.to_string(),
                o.lead_id.to_string(),
                o.agent.clone(),
                o.source.clone(),
                o.time_left.clone(),
            ]
        })
        .collect();
    print_table(&["OFFER", "LEAD", "AGENT", "SOURCE", "LEFT"], &offers);
    println!("\nToday: {} leads", d.today.total);
    let by = |m: &std::collections::BTreeMap<String, usize>| -> Vec<Vec<String>> {
        m.iter()
            .map(|(k, v)| vec![k.clone(), v.to_string()])
            .collect()
    };
    print_table(&["SOURCE", "LEADS"], &by(&d.today.by_source));
    print_table(&["AGENT", "LEADS"], &by(&d.today.by_agent));
    println!(
        "\nMedian time from offer to acceptance: {}\n",
        d.median_seconds_to_accept
            .map(|s| format!("{}m {:02}s", s / 60, s % 60))
            .unwrap_or_else(|| "no accepted offers yet".into())
    );
}

fn print_offers_table(offers: &[leadmail::store::OfferRow]) {
    let now = leadmail::store::now();
    let rows: Vec<Vec<String>> = offers
        .iter()
        .map(|o| {
            let left = if o.state == "open" {
                leadmail::admin::time_left(&now, &o.deadline)
            } else {
                o.decided_at.clone().unwrap_or_default()
            };
            vec![
                o.id.to_string(),
                o.lead_id.to_string(),
                o.brokerage.clone(),
                o.agent.clone(),
                o.state.clone(),
                left,
                o.source.clone(),
                o.rule.clone().unwrap_or_default(),
                o.mode.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "OFFER",
            "LEAD",
            "BROKERAGE",
            "AGENT",
            "STATE",
            "LEFT/DECIDED",
            "SOURCE",
            "RULE",
            "MODE",
        ],
        &rows,
    );
}

fn print_agents_table(agents: &[admin::AgentStatus]) {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            let status = match &a.halted {
                Some(h) => format!(
                    "halted by {}: {}{}",
                    h.by,
                    h.reason,
                    h.until
                        .as_ref()
                        .map(|u| format!(" (until {u})"))
                        .unwrap_or_default()
                ),
                None if !a.active => "inactive".to_string(),
                None => match &a.away {
                    Some(w) => format!(
                        "out of office{}{}",
                        w.delegate
                            .as_ref()
                            .map(|d| format!(", delegate {d}"))
                            .unwrap_or_default(),
                        w.until
                            .as_ref()
                            .map(|u| format!(" (until {u})"))
                            .unwrap_or_default()
                    ),
                    None => "available".to_string(),
                },
            };
            vec![
                a.brokerage.clone(),
                a.id.clone(),
                a.name.clone(),
                a.role.to_string(),
                a.weight.to_string(),
                status,
            ]
        })
        .collect();
    print_table(
        &["BROKERAGE", "AGENT", "NAME", "ROLE", "WEIGHT", "STATUS"],
        &rows,
    );
}

/// Prints rows under a header, each column as wide as its widest cell.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_ingest_table(reports: &[IngestReport]) {
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let input = std::path::Path::new(&r.input)
                .file_name()
                .map_or(r.input.clone(), |n| n.to_string_lossy().into_owned());
            let (kind, owner, user, why) = match &r.routing {
                Some(d) => (
                    d.kind.as_str().to_string(),
                    d.owner.clone(),
                    d.user.clone(),
                    d.reason.clone(),
                ),
                None => (
                    String::new(),
                    String::new(),
                    String::new(),
                    r.reason.clone().unwrap_or_default(),
                ),
            };
            vec![
                input,
                r.outcome.as_str().to_string(),
                r.lead_id.map(|i| i.to_string()).unwrap_or_default(),
                r.source.clone().unwrap_or_default(),
                kind,
                owner,
                user,
                why,
            ]
        })
        .collect();
    print_table(
        &[
            "INPUT", "OUTCOME", "LEAD", "SOURCE", "KIND", "OWNER", "USER", "WHY",
        ],
        &rows,
    );
    let count = |o: &str| reports.iter().filter(|r| r.outcome.as_str() == o).count();
    println!(
        "\n{} messages: {} created, {} repeat, {} duplicate, {} ignored, {} quarantined",
        reports.len(),
        count("created"),
        count("repeat"),
        count("duplicate"),
        count("ignored"),
        count("quarantined")
    );
}

/// The assigned user, or "(offered)" while agents are still deciding.
fn user_or_status(l: &leadmail::store::LeadRecord) -> String {
    if l.status == "offered" {
        "(offered)".to_string()
    } else {
        l.user.clone()
    }
}

fn print_lead_table(leads: &[leadmail::store::LeadRecord]) {
    let rows: Vec<Vec<String>> = leads
        .iter()
        .map(|l| {
            vec![
                l.id.to_string(),
                l.brokerage.clone(),
                l.created_at.clone(),
                l.source.clone(),
                l.kind.clone(),
                l.owner.clone(),
                user_or_status(l),
                l.contact.name.clone().unwrap_or_default(),
                l.property.address.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "BROKERAGE",
            "CREATED",
            "SOURCE",
            "KIND",
            "OWNER",
            "USER",
            "CONTACT",
            "PROPERTY",
        ],
        &rows,
    );
}

fn print_lead_detail(l: &leadmail::store::LeadRecord, history: &[leadmail::store::LeadEvent]) {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_string());
    println!("Lead {} ({}, {})", l.id, l.brokerage, l.created_at);
    println!("  owner:    {}", l.owner);
    println!("  user:     {}", user_or_status(l));
    if let Some(fee) = l.referral_fee_percent {
        println!("  referral fee: {fee}%");
    }
    println!("  kind:     {} ({})", l.kind, l.reason);
    println!("  source:   {}", l.source);
    println!("  name:     {}", opt(&l.contact.name));
    println!("  email:    {}", opt(&l.contact.email));
    println!("  phone:    {}", opt(&l.contact.phone));
    println!("  property: {}", opt(&l.property.address));
    println!("  mls:      {}", opt(&l.property.mls_number));
    println!(
        "  price:    {}",
        l.property
            .price
            .map_or("-".to_string(), |p| format!("${p}"))
    );
    println!("  message:  {}", opt(&l.message));
    println!("History:");
    for e in history {
        println!(
            "  {}  {:<14} by {}{}{}",
            e.at,
            e.kind,
            e.actor,
            e.to.as_ref()
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default(),
            e.note
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
    }
}
