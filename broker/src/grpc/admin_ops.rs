//! The operations part of `apogee.cluster.v1.Admin` on a broker: moving a
//! consumer group's offsets on a topic here (a dry-run plan unless asked to
//! execute), the clients with a Telemetry session or a remoting connection to this broker, and
//! its effective config with the runtime settings ([`crate::runtime_config`]). The rules are
//! the broker's admin actions (`crate::actions::admin`); these functions decode and encode.

use crate::actions::admin::{OffsetReset, OffsetTarget};
use crate::services::Broker;
use apogee_proto::cluster::{
    reset_group_offset_request::To, GetBrokerConfigResponse, ListClientsResponse, QueueReset,
    ResetGroupOffsetRequest, ResetGroupOffsetResponse, UpdateBrokerConfigRequest,
    UpdateBrokerConfigResponse,
};
use apogee_proto::ApogeeError;

/// Plans (or, with `execute`, makes) the move of a group's offsets; `by` is who asked (for
/// the log).
pub fn reset_offset(
    broker: &Broker,
    req: ResetGroupOffsetRequest,
    by: &str,
) -> Result<ResetGroupOffsetResponse, ApogeeError> {
    let to = req.to.map(|to| match to {
        To::Earliest(_) => OffsetTarget::Earliest,
        To::Latest(_) => OffsetTarget::Latest,
        To::TimestampMs(ms) => OffsetTarget::TimestampMs(ms),
    });
    let reset = OffsetReset {
        group: &req.group,
        topic: &req.topic,
        to,
        execute: req.execute,
    };
    let queues = broker
        .reset_group_offset(&reset, by)?
        .into_iter()
        .map(|q| QueueReset {
            broker_name: broker.config().broker_name.clone(),
            queue_id: q.queue_id,
            current_offset: q.current_offset,
            new_offset: q.new_offset,
            inflight: q.inflight,
        })
        .collect();
    Ok(ResetGroupOffsetResponse {
        queues,
        executed: req.execute,
    })
}

pub fn list_clients(broker: &Broker) -> ListClientsResponse {
    ListClientsResponse {
        clients: broker.connected_clients(),
    }
}

pub fn get_config(broker: &Broker) -> Result<GetBrokerConfigResponse, ApogeeError> {
    let effective = broker.effective_config()?;
    Ok(GetBrokerConfigResponse {
        toml: effective.toml,
        runtime: effective.runtime,
    })
}

/// Changes one runtime setting of the group (its master only); `by` is who asked (for the
/// log).
pub fn update_config(
    broker: &Broker,
    req: UpdateBrokerConfigRequest,
    by: &str,
) -> Result<UpdateBrokerConfigResponse, ApogeeError> {
    let (setting, previous) = broker.change_runtime_setting(&req.key, &req.value, by)?;
    Ok(UpdateBrokerConfigResponse {
        setting: Some(setting),
        previous,
    })
}
