//! A broker's replication state as its Admin status reports it, and the waits built on it
//! (a static-mode group's slave linked to its master or not, caught up with it).

use crate::{rpc, wait_until};
use apogee_proto::cluster::{BrokerStatus, GetBrokerStatusRequest};
use std::time::Duration;

/// How long the waits here allow (a slave's reconnect, a catch-up under a loaded CI).
const WAIT: Duration = Duration::from_secs(90);

/// The broker's status at `addr`; `None` when it does not answer within 3 s.
pub async fn status(addr: &str) -> Option<BrokerStatus> {
    let mut admin = rpc::admin(addr);
    let call = admin.get_broker_status(GetBrokerStatusRequest {});
    match tokio::time::timeout(Duration::from_secs(3), call).await {
        Ok(Ok(r)) => r.into_inner().status,
        _ => None,
    }
}

/// Waits until the slave at `slave` is (`connected`) or is not linked to its master: after
/// the master's death, until the slave serves as a slave whose master is away.
pub async fn wait_link(slave: &str, connected: bool) {
    wait_until(WAIT, "the slave's link to its master", || async {
        let s = status(slave).await.ok_or("the slave does not answer")?;
        (s.master_connected == connected)
            .then_some(())
            .ok_or(format!("master_connected = {}", s.master_connected))
    })
    .await;
}

/// Waits until the slave's log ends where the master's does (the master has written);
/// that end.
pub async fn wait_caught_up(master: &str, slave: &str) -> u64 {
    wait_until(WAIT, "the slave to catch up", || async {
        let (m, s) = (status(master).await, status(slave).await);
        match (&m, &s) {
            (Some(m), Some(s)) if m.log_end_offset > 0 && m.log_end_offset == s.log_end_offset => {
                Ok(s.log_end_offset as u64)
            }
            _ => Err(format!(
                "master log end {:?}, slave log end {:?}",
                m.map(|x| x.log_end_offset),
                s.map(|x| x.log_end_offset)
            )),
        }
    })
    .await
}
