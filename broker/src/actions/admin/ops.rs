//! The operations on this broker: the clients connected to it (Telemetry sessions and
//! remoting connections), its effective config with the runtime settings
//! ([`crate::runtime_config`]) and a change of one (its master's only), its transactions
//! (listed, resolved by an operator), its scheduled messages, and the traffic history.

use crate::services::Broker;
use crate::txn::{EndRequest, Resolution, ResolvedBy};
use apogee_proto::cluster::{
    ConnectedClient, RuntimeSetting, ScheduleStats, ScheduledInfo, TrafficHistoryRequest,
    TrafficHistoryResponse, TransactionInfo,
};
use apogee_proto::ApogeeError;

/// The broker's effective config.
#[derive(Clone, Debug)]
pub struct EffectiveConfig {
    /// The config file this broker runs with now, as TOML.
    pub toml: String,
    /// Every runtime setting with its value now.
    pub runtime: Vec<RuntimeSetting>,
}

/// Scheduled messages and the schedule's counts.
#[derive(Clone, Debug)]
pub struct ScheduledListing {
    pub messages: Vec<ScheduledInfo>,
    pub stats: ScheduleStats,
}

impl Broker {
    /// The clients connected here: Telemetry sessions, then remoting clients, each naming
    /// this broker (`name`, or `name#id` for a slave).
    pub fn connected_clients(&self) -> Vec<ConnectedClient> {
        let c = self.config();
        let at = if c.broker_id == 0 {
            c.broker_name.clone()
        } else {
            format!("{}#{}", c.broker_name, c.broker_id)
        };
        self.sessions()
            .list()
            .iter()
            .map(|s| s.to_connected_client(&at))
            .chain(self.remoting_clients().connected_clients(&at))
            .collect()
    }

    /// The effective config and the runtime settings.
    pub fn effective_config(&self) -> Result<EffectiveConfig, ApogeeError> {
        let owners = self.runtime_owners();
        let effective = crate::runtime_config::effective(&owners);
        let toml = toml::to_string_pretty(&effective)
            .map_err(|e| ApogeeError::internal_in("rendering the config", e))?;
        Ok(EffectiveConfig {
            toml,
            runtime: crate::runtime_config::settings(&owners)?,
        })
    }

    /// Changes one runtime setting of the group; `by` is who asked (for the log). `key` is
    /// the setting's key or its RocketMQ name (`runtime_config::ROCKETMQ_NAMES`). Only its
    /// master does (a slave runs with what its master keeps), so a slave refuses, naming
    /// its master. Answers the setting now and its previous value.
    pub fn change_runtime_setting(
        &self,
        key: &str,
        value: &str,
        by: &str,
    ) -> Result<(RuntimeSetting, String), ApogeeError> {
        let key = crate::runtime_config::setting_key(key);
        tracing::info!(key = %key, value = %value, by, "operator changes a runtime setting");
        if !self.membership().is_master() {
            let name = &self.config().broker_name;
            let master = self.master_named();
            return Err(ApogeeError::PreconditionFailed(format!(
                "member {} of broker group {name} is not the master: runtime settings are the \
                 group's, set on {master} (`apogee broker config set {name} ...`), which keeps \
                 them and passes them to every member",
                self.config().broker_id
            )));
        }
        crate::runtime_config::update(&self.runtime_owners(), key, value)
    }

    /// Transactions here (only the unresolved ones with `unresolved_only`; of one topic
    /// unless `topic` is empty), at most `limit`.
    pub async fn list_transactions(
        &self,
        unresolved_only: bool,
        topic: String,
        limit: usize,
    ) -> Result<Vec<TransactionInfo>, ApogeeError> {
        let txns = self.txns().clone();
        tokio::task::spawn_blocking(move || txns.list(unresolved_only, &topic, limit))
            .await
            .map_err(ApogeeError::internal)?
    }

    /// An operator commits (`commit`) or rolls back a transaction; `by` is who (for the log).
    pub async fn resolve_transaction(
        &self,
        transaction_id: &str,
        commit: bool,
        by: &str,
    ) -> Result<TransactionInfo, ApogeeError> {
        tracing::info!(
            txn = %transaction_id,
            commit,
            by,
            "operator resolves a transaction"
        );
        self.txns()
            .end(EndRequest {
                transaction_id,
                topic: "",
                message_id: "",
                resolution: if commit {
                    Resolution::Commit
                } else {
                    Resolution::Rollback
                },
                by: ResolvedBy::Operator,
            })
            .await
    }

    /// Scheduled messages (of one topic unless `topic` is empty), at most `limit`, and the
    /// schedule's counts.
    pub async fn list_scheduled(
        &self,
        topic: String,
        limit: usize,
    ) -> Result<ScheduledListing, ApogeeError> {
        let schedule = self.schedule().clone();
        let messages = tokio::task::spawn_blocking(move || schedule.list(&topic, limit))
            .await
            .map_err(ApogeeError::internal)??;
        Ok(ScheduledListing {
            messages,
            stats: self.schedule().stats(),
        })
    }

    /// The messages in and out per topic and group over the last hour, of the series the
    /// request names (the sampler answers in the wire's shape).
    pub fn traffic_history(&self, req: &TrafficHistoryRequest) -> TrafficHistoryResponse {
        self.metrics().traffic().history(req)
    }
}
