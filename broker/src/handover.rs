//! When a controller-mode master hands its role over (the procedure is
//! `replication/handover.rs`):
//!
//! - **At SIGTERM** ([`Broker::leave`]): before the broker stops, the master hands over to
//!   the connected in-sync member the controller elects, then drains: it unregisters from the
//!   NameServers (the routes name only the new master) but keeps answering at its address
//!   for `failover.drain_ms`, as a slave that passes sends and consume calls to the new
//!   master, so clients that learn the new master only at their next route refresh (every
//!   30 s for the official clients) lose no call and have left this address when it
//!   closes; at the end of the drain it sends the protocol's ReconnectEndpointsCommand to
//!   every client with a Telemetry session here, and stops. A slave drains the same way:
//!   routes list every member's address, so clients send to slaves too, and a slave that
//!   closed at once would fail their calls until their next refresh. Its replication goes on
//!   through the drain (the calls it passes on need the link); its session's end at exit
//!   drops it from the master's in-sync set. A master with nobody to hand over to stops at
//!   once: the group has no other member to send clients to.
//! - **At an operator's switch** ([`Broker::spawn_handover_on_request`], a master's role
//!   task): the controller's answers to the master's beats name the member to hand over to
//!   (`Assignment.hand_over_to`), and the master does, once per request.

use std::sync::Arc;
use std::time::Duration;

use apogee_proto::v2::{telemetry_command::Command, ReconnectEndpointsCommand};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::membership::MemberRole;
use crate::services::Broker;

impl Broker {
    fn handover_timeout(&self) -> Duration {
        Duration::from_millis(self.config().failover.handover_timeout_ms)
    }

    /// What a controller-mode member does at SIGTERM before it stops (module doc): a master
    /// hands its role over, then it drains; returns at once for a static-mode or fenced
    /// broker.
    pub async fn leave(&self) {
        let membership = self.membership();
        if !membership.controlled_mode() {
            return;
        }
        match membership.role_view().role {
            MemberRole::Master { .. } => {
                if !self.hand_over_before_stopping().await {
                    return;
                }
            }
            MemberRole::Slave { .. } => {}
            MemberRole::Fenced => return,
        }
        let drain = Duration::from_millis(self.config().failover.drain_ms);
        if !drain.is_zero() {
            // Out of the routes first: the clients' next refresh names only the other
            // members, and they move on before this address closes.
            self.nameservers().leave_routes();
            tracing::info!(
                drain_ms = drain.as_millis() as u64,
                "draining: answering as a slave until the clients moved to the other members"
            );
            let mut closing = self.closing();
            tokio::select! {
                _ = tokio::time::sleep(drain) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        }
        if membership.is_master() {
            // Elected while draining (its master failed meanwhile): hand over once more.
            self.hand_over_before_stopping().await;
        }
        let told = self.tell_clients_to_reconnect();
        tracing::info!(
            clients = told,
            "drain over: told the clients to reconnect; stopping"
        );
    }

    /// A master's handover at SIGTERM; whether it handed its role over.
    async fn hand_over_before_stopping(&self) -> bool {
        tracing::info!("stopping: handing the master's role over before the broker stops");
        match self
            .replication()
            .hand_over(None, self.handover_timeout())
            .await
        {
            Ok(done) => {
                tracing::warn!(
                    epoch = done.epoch,
                    successor = %done.successor,
                    took_ms = done.took.as_millis() as u64,
                    linked = done.linked,
                    "handed the master's role over"
                );
                true
            }
            Err(e) => {
                tracing::warn!("no handover before stopping: {e}");
                false
            }
        }
    }

    /// Sends ReconnectEndpointsCommand on every Telemetry session here; how many took it.
    fn tell_clients_to_reconnect(&self) -> usize {
        let sessions = self.sessions();
        sessions
            .list()
            .iter()
            .filter(|s| {
                let nonce = uuid::Uuid::new_v4().to_string();
                sessions.push(
                    &s.client_id,
                    Command::ReconnectEndpointsCommand(ReconnectEndpointsCommand { nonce }),
                )
            })
            .count()
    }

    /// A master's role task: hands over whenever the controller asks (an operator's switch),
    /// until `stop`.
    pub(crate) fn spawn_handover_on_request(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let broker = self.clone();
        tokio::spawn(async move {
            let mut wanted = broker.membership().hand_over_wanted();
            loop {
                let target = *wanted.borrow_and_update();
                if target != 0 {
                    // Not awaited here: the handover ends in a change of role, which waits
                    // for this task to end.
                    let handing = broker.clone();
                    tokio::spawn(async move {
                        let timeout = handing.handover_timeout();
                        match handing.replication().hand_over(Some(target), timeout).await {
                            Ok(done) => tracing::warn!(
                                epoch = done.epoch,
                                successor = %done.successor,
                                took_ms = done.took.as_millis() as u64,
                                "handed the master's role over, as an operator asked"
                            ),
                            Err(e) => tracing::warn!(
                                target,
                                "the handover an operator asked for did not happen: {e}"
                            ),
                        }
                    });
                    return;
                }
                tokio::select! {
                    changed = wanted.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        })
    }
}
