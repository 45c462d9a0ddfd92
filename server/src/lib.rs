//! apogee-server: what the broker and the NameServer both are as servers, so both run one
//! copy of it and `apogee-client` compiles none of it (the protocol itself is apogee-proto's).
//!
//! - [`net`]: accepting connections (TLS handshakes included, off the accept loop) and
//!   [`serve`]: serving a tower service on them with a graceful stop.
//! - [`tls`]: a server's reloadable TLS; [`tls_config`]: the `[tls]` section that makes it.
//! - [`ops`]: the HTTP operations endpoint (Prometheus metrics, liveness, readiness) and the
//!   layer timing gRPC calls; [`rpc_span`]: the layer opening a `tracing` span per gRPC call.
//! - [`auth`]: the guard in front of every service and the handlers' ACL check;
//!   [`security`]: the `[security]` section; [`cluster_mtls`]: cluster-internal calls refused
//!   without a verified client certificate; [`cluster_proof`]: or without the cluster proof.
//! - [`remoting`]: the RocketMQ remoting protocol (4.x clients) on the gRPC listener or its
//!   own: the service trait handlers implement, the connection they push requests on.
//! - [`telemetry`]: the Telemetry session registry (connected clients, settings pushed to
//!   them); [`settings`]: the settings a server hands its clients.
//! - [`config_file`]: the TOML + environment loader; [`shared_config`]: the settings both
//!   servers' configs have, validated one way; [`logging`]: the log set-up.
//! - [`bootstrap`]: the start and the stop both servers share (operations endpoint, TLS
//!   reloader, health, the layer stack, serving, one shutdown order: NOT_SERVING first).
//! - [`stdout`]: printing the servers' `--check-config` output, a closed pipe included.
//! - [`web_console`]: what a NameServer tells the web console it serves, and the routes it
//!   is given for it, so neither library depends on the other.
//! - [`client_defects`]: requests a known defect of an official client garbles, put right
//!   where they arrive.

pub mod auth;
pub mod bootstrap;
pub mod client_defects;
pub mod cluster_mtls;
pub mod cluster_proof;
pub mod config_file;
pub mod endpoint;
pub mod listen_addr;
pub mod logging;
pub mod net;
pub mod ops;
pub mod process;
pub mod remoting;
pub mod rpc_span;
pub mod security;
pub mod serve;
pub mod settings;
pub mod shared_config;
pub mod stdout;
pub mod telemetry;
pub mod tls;
pub mod tls_config;
pub mod web_console;
