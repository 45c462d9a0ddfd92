//! The fault harness: real NameServers and brokers, one per Linux network namespace on a
//! small virtual network, and the faults a run injects into them.
//!
//! - [`network`]: namespaces, a bridge, veth pairs and addresses from 198.18.0.0/15 only,
//!   all deleted on drop (also when the test panics); links down and up; a member cut off
//!   from some peers (nftables rules in its namespace).
//! - [`cluster`]: [`NetCluster`], the processes on that network (`ip netns exec`), and the
//!   faults as methods: SIGKILL, SIGTERM, SIGSTOP/SIGCONT, links down, partial cuts, every
//!   NameServer restarted, a full disk (a tmpfs data dir, [`disk`]), a data dir wiped behind
//!   a killed broker's back.
//! - [`controlled`]: the cluster in controller mode (the NameServers the controller's Raft
//!   voters, members whose roles it decides): the controller's view of a group, its leader,
//!   the `apogee` CLI pointed at it.
//!
//! Namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2), `nft`
//! (nftables) and `mount`. A test calls [`available`] first: where they are missing it
//! prints why and the test returns (a skip), except under CI (`CI=true`), where a skip is a
//! failure and [`available`] panics with the reason.

pub mod cluster;
pub mod controlled;
pub mod disk;
pub mod network;

pub use cluster::{NetCluster, NetClusterBuilder};
pub use controlled::controlled_member;
pub use network::Network;

use std::sync::OnceLock;

/// Why this machine cannot run the namespace tests (`None`: it can). Checked once per
/// process: root, the tools, and a namespace actually made and deleted.
pub fn unavailable() -> Option<String> {
    static REASON: OnceLock<Option<String>> = OnceLock::new();
    REASON
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return Some("network namespaces need root".into());
            }
            for (tool, package) in [("ip", "iproute2"), ("nft", "nftables"), ("mount", "mount")] {
                if network::tool(tool).is_none() {
                    return Some(format!(
                        "`{tool}` is not installed (Debian package {package}; deploy/dev-setup.sh installs it)"
                    ));
                }
            }
            let probe = format!("apogee-{}-probe", std::process::id());
            if let Err(e) = network::run("ip", &["netns", "add", &probe]) {
                return Some(format!("cannot make a network namespace: {e}"));
            }
            let _ = network::run("ip", &["netns", "del", &probe]);
            None
        })
        .clone()
}

/// Whether `test` can use the harness: `false` (after printing why) where namespaces
/// cannot be made; under CI (`CI=true`) that is a failure instead.
pub fn available(test: &str) -> bool {
    let Some(reason) = unavailable() else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: the fault harness is unavailable under CI: {reason}"
    );
    eprintln!("skipping {test}: {reason}");
    false
}
