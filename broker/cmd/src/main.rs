//! `apogee-broker`: runs one broker, or with `--standalone` a NameServer and
//! a broker in one process on the default loopback ports: the quickest way
//! to a working Apogee.

/// mimalloc: the glibc allocator was a sixth of the CPU profile of the send path
/// (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context};
use apogee_broker::config::BrokerConfig;
use apogee_nameserver::config::ControllerSection;
use apogee_nameserver::NameServerConfig;
use apogee_proto::names::{DEFAULT_BROKER_PORT, DEFAULT_NAMESERVER_PORT};
use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "apogee-broker",
    version,
    about = "Apogee broker (RocketMQ 5 protocol)"
)]
struct Args {
    /// TOML config file (see deploy/broker.toml); APOGEE_BROKER_* variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Load and check the config, print it, and exit.
    #[arg(long)]
    check_config: bool,
    /// Also run a NameServer in this process, on 127.0.0.1:9876 with the broker on 127.0.0.1:10911.
    #[arg(long)]
    standalone: bool,
    /// Data directory (standalone default: ./apogee-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (overrides `listen`).
    #[arg(long)]
    listen: Option<String>,
    /// NameServer address (host:port); repeat for several, or separate them by ';' or ','
    /// (overrides `nameservers`).
    #[arg(long = "nameserver")]
    nameservers: Vec<String>,
    /// Broker group name (overrides `broker_name`).
    #[arg(long)]
    broker_name: Option<String>,
    /// Drop the derived index state (consume queues, queue heads, message id and key
    /// lookups, transaction and schedule state) and rebuild it from the commit log before
    /// serving, as Kafka rebuilds a log's index files at start when they are missing.
    /// Consumer offsets, consume state, topic and group configs, users and ACLs are kept.
    /// /healthz answers during the rebuild, /readyz says 503 with its progress; a kill
    /// during it makes the next start rebuild again. The same rebuild runs by itself when
    /// the index format on disk is older than this binary's.
    #[arg(long)]
    rebuild_index: bool,
    /// With --rebuild-index: exit once the rebuild is done instead of serving (an offline
    /// repair, like `tikv-ctl`'s); the exit status says whether it succeeded.
    #[arg(long, requires = "rebuild_index")]
    exit_after_rebuild: bool,
    /// Restore this broker's group from its tier (`[tier]`) into an empty data dir, then
    /// serve: every tiered message at its old queue offsets, found by id and key, and the
    /// topics, groups, consumer offsets, users and ACLs of the newest state snapshot in the
    /// bucket. The log says what window was lost (messages not uploaded yet, state changed
    /// after the snapshot). Refused when the data dir is not empty (docs/TIERED.md).
    #[arg(long, conflicts_with = "rebuild_index")]
    restore_from_tier: bool,
}

fn load(args: &Args) -> anyhow::Result<BrokerConfig> {
    let mut config: BrokerConfig =
        apogee_server::config_file::load(args.config.as_deref(), apogee_broker::config::ENV_PREFIX)
            .context("loading broker config")?;
    if args.standalone {
        config.listen = format!("127.0.0.1:{DEFAULT_BROKER_PORT}");
        config.nameservers = vec![format!("127.0.0.1:{DEFAULT_NAMESERVER_PORT}")];
        config.data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./apogee-data"))
            .join("broker");
    } else if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if !args.nameservers.is_empty() {
        config.nameservers = args
            .nameservers
            .iter()
            .flat_map(|list| apogee_proto::names::split_address_list(list))
            .collect();
    }
    if let Some(n) = &args.broker_name {
        config.broker_name = n.clone();
    }
    if args.standalone && config.role == apogee_broker::config::Role::Slave {
        anyhow::bail!(
            "role = \"slave\" cannot run --standalone: a standalone broker is alone in its \
             group, so it has no master to replicate from"
        );
    }
    config.validate()?;
    Ok(config)
}

/// Binds an HTTP operations endpoint ("" = none), naming the setting when it cannot.
async fn bind_ops(addr: &str) -> anyhow::Result<Option<apogee_server::ops::OpsListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let listener = apogee_server::ops::OpsListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP endpoint to {addr} (http_listen)"))?;
    Ok(Some(listener))
}

/// Errors end in one line on stderr (no backtrace): exit 2 for a bad config, 1 otherwise.
fn main() -> std::process::ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    // No LIFO slot: a task woken by another (a connection's task by a finished send) waits
    // behind the tasks already ready instead of running next, so the connection writes the
    // responses of every send ready by then in one go: at 4 x 16 in flight 0.14 socket
    // writes per send instead of 0.78. A lone send pays a wake-up of the other worker
    // instead (docs/PERFORMANCE.md, "The runtime's LIFO slot").
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error: {e:#}");
            std::process::exit(2);
        }
    };
    if args.check_config {
        // `[tier]`: the bucket is reached and its prefix read (nothing is written).
        let tier = if config.tier.enabled() {
            match apogee_broker::tier::check_reachable(&config.tier, &config.cluster_name).await {
                Ok(line) => format!("{line}\n"),
                Err(e) => {
                    eprintln!("config error: {e}");
                    std::process::exit(2);
                }
            }
        } else {
            String::new()
        };
        // A reader that closes early (`| head -1`) ends the output, not in a panic.
        apogee_server::stdout::print(&format!(
            "config OK\n{tier}\n{}\n",
            toml::to_string_pretty(&config)?
        ))?;
        return Ok(());
    }
    if let Err(e) = apogee_server::logging::init(config.log_level.as_deref(), config.log_format) {
        eprintln!("config error: {e}");
        std::process::exit(2);
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The in-process NameServer stops after the broker, so the broker can unregister from it.
    let (ns_stop_tx, ns_stop_rx) = tokio::sync::watch::channel(false);
    let mut nameserver = None;
    if args.standalone {
        let ns_config = NameServerConfig {
            listen: format!("127.0.0.1:{DEFAULT_NAMESERVER_PORT}"),
            // The same trust and credentials as the broker beside it.
            security: config.security.clone(),
            // The broker's TLS too: it connects to this NameServer with it.
            tls: config.tls.clone(),
            // The controller of automatic failover as a single voter, its Raft data in
            // <data dir>/controller beside the broker's <data dir>/broker (the store refuses
            // entries it did not write in its own dir).
            controller: ControllerSection {
                enabled: true,
                data_dir: config
                    .data_dir
                    .with_file_name("controller")
                    .display()
                    .to_string(),
                ..ControllerSection::default()
            },
            ..NameServerConfig::default()
        };
        let listener = apogee_server::net::Listener::bind(&ns_config.listen)
            .await
            .with_context(|| format!("binding the nameserver to {}", ns_config.listen))?;
        let ops = bind_ops(&ns_config.http_listen).await?;
        tracing::info!(
            "standalone nameserver on {} (gRPC), metrics and health on http://{}",
            ns_config.listen,
            ns_config.http_listen
        );
        let mut rx = ns_stop_rx.clone();
        nameserver = Some(tokio::spawn(apogee_nameserver::serve(
            ns_config,
            listener,
            ops,
            Some(apogee_console::routes),
            async move {
                let _ = rx.changed().await;
            },
        )));
    }
    let listener = apogee_server::net::Listener::bind(&config.listen)
        .await
        .with_context(|| format!("binding the broker to {}", config.listen))?;
    let ops = bind_ops(&config.http_listen).await?;
    let mut rx = stop_rx.clone();
    let start = apogee_broker::StartOptions {
        rebuild_index: args.rebuild_index,
        exit_after_open: args.exit_after_rebuild,
        restore_from_tier: args.restore_from_tier,
    };
    let mut broker = tokio::spawn(apogee_broker::serve_with(
        config,
        start,
        listener,
        ops,
        async move {
            let _ = rx.changed().await;
        },
    ));
    // Run until a signal, or until the broker stops by itself (a failure).
    let result = tokio::select! {
        _ = apogee_server::process::shutdown_signal() => {
            let _ = stop_tx.send(true);
            broker.await?
        }
        r = &mut broker => {
            let _ = stop_tx.send(true);
            r?
        }
    };
    let _ = ns_stop_tx.send(true);
    if let Some(ns) = nameserver {
        ns.await??;
    }
    if let Err(e) = result {
        bail!("broker failed: {e}");
    }
    Ok(())
}
