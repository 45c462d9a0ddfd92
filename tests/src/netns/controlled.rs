//! A [`NetCluster`] in controller mode (built with [`super::NetClusterBuilder::controller`]):
//! members with fast beats, the controller's view of a group and which NameServer's
//! controller leads, asked of the NameServers still running (one of them may be killed or
//! cut off by the fault under test), and the `apogee` CLI pointed at the cluster (`broker
//! elect`, `cluster rolling-restart`).

use super::NetCluster;
use crate::cli::{self, CliOutput, CliProcess};
use crate::failover::{controller_group_at, controller_status};
use crate::{wait_until, BrokerSpec};
use apogee_proto::cluster::ControllerGroupStatus;
use std::time::Duration;

/// How long a group may take to get a master with a full in-sync set (a fresh cluster's
/// Raft election, the members' registration, the slaves' catch-up).
const SETTLED: Duration = Duration::from_secs(60);

/// Member `id` (>= 1) of `group` in controller mode, named `<group>-<id>`, as
/// [`crate::failover::member`]: a master beats every 250 ms (eight renewals per 2 s lease),
/// slaves reconnect after 200 ms, 1 MiB segments, a short drain after a handover.
pub fn controlled_member(group: &str, id: i64) -> BrokerSpec {
    crate::failover::member(group, id)
}

impl NetCluster {
    /// `group` as the controller's leader confirmed it, asked of each running NameServer in
    /// turn until one answers.
    pub async fn controller_group(&self, group: &str) -> Result<ControllerGroupStatus, String> {
        let mut errors = Vec::new();
        for ns in self.live_ns_addrs() {
            match controller_group_at(&ns, group).await {
                Ok(g) => return Ok(g),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// Waits until the controller has a master of `group` above epoch `epoch_above` with at
    /// least `in_sync` members in its in-sync set; returns the group's state.
    pub async fn wait_master(
        &self,
        group: &str,
        epoch_above: u64,
        in_sync: usize,
    ) -> ControllerGroupStatus {
        wait_until(
            SETTLED,
            &format!("a master of {group} above epoch {epoch_above} with {in_sync} in sync"),
            || async {
                let g = self.controller_group(group).await?;
                (g.master != 0 && g.master_epoch > epoch_above && g.in_sync.len() >= in_sync)
                    .then_some(g.clone())
                    .ok_or(format!("{g:?}"))
            },
        )
        .await
    }

    /// The index (in start order, `ns-<i>`) of the NameServer whose controller leads, once
    /// every running NameServer names the same leader.
    pub async fn controller_leader(&self) -> usize {
        let live: Vec<(usize, String)> = self
            .ns_addrs()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !self.nameserver_down(*i))
            .collect();
        wait_until(
            Duration::from_secs(30),
            "the controllers to agree on a leader",
            || async {
                let mut leaders = Vec::new();
                for (i, addr) in &live {
                    let s = controller_status(addr, true).await?;
                    leaders.push((*i, s.leader_id, s.is_leader));
                }
                let leader = leaders[0]
                    .1
                    .ok_or(format!("no leader known: {leaders:?}"))?;
                let agreed = leaders.iter().all(|(_, l, _)| *l == Some(leader));
                // Node ids are 1..=n in start order.
                let index = leader as usize - 1;
                let leads = leaders.iter().any(|(i, _, is)| *i == index && *is);
                (agreed && leads)
                    .then_some(index)
                    .ok_or(format!("(index, leader, is leader): {leaders:?}"))
            },
        )
        .await
    }

    /// Runs `apogee <args>` (from the test process, which reaches every member) against the
    /// first running NameServer, on a blocking thread.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let full = self.cli_args(args);
        tokio::task::spawn_blocking(move || cli::run(&full))
            .await
            .expect("the CLI's thread panicked")
    }

    /// Starts `apogee <args>` as [`cli`](Self::cli) does, without waiting for it.
    pub fn cli_spawn(&self, args: &[&str]) -> CliProcess {
        cli::spawn(&self.cli_args(args))
    }

    /// `args` after the flag that points the CLI at the first running NameServer.
    fn cli_args(&self, args: &[&str]) -> Vec<String> {
        let live = self.live_ns_addrs();
        let ns = live.first().expect("every NameServer is down");
        let mut full = vec!["--nameserver".to_string(), ns.clone()];
        full.extend(args.iter().map(|a| a.to_string()));
        full
    }
}
