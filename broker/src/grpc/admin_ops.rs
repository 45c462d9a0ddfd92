//! The operations part of `apogee.cluster.v1.Admin` on a broker: moving a
//! consumer group's offsets on a topic here (a dry-run plan unless asked to
//! execute), the clients with a Telemetry session to this broker, and its
//! effective config with the runtime settings ([`crate::runtime_config`]).

use crate::services::Broker;
use apogee_proto::cluster::{
    reset_group_offset_request::To, GetBrokerConfigResponse, ListClientsResponse, QueueReset,
    ResetGroupOffsetRequest, ResetGroupOffsetResponse, UpdateBrokerConfigRequest,
    UpdateBrokerConfigResponse,
};
use apogee_proto::{limits, ApogeeError};

/// Plans (or, with `execute`, makes) the move of a group's offsets; `by` is who asked (for
/// the log).
pub fn reset_offset(
    broker: &Broker,
    req: ResetGroupOffsetRequest,
    by: &str,
) -> Result<ResetGroupOffsetResponse, ApogeeError> {
    limits::validate_group(&req.group)?;
    limits::validate_topic(&req.topic)?;
    let to = req.to.ok_or_else(|| {
        ApogeeError::BadRequest("say where to: earliest, latest or a time".into())
    })?;
    let topic = broker
        .topics()
        .get(&req.topic)
        .ok_or_else(|| ApogeeError::TopicNotFound(req.topic.clone()))?;
    let store_err = ApogeeError::internal::<crate::store::StoreError>;
    let mut queues = Vec::with_capacity(topic.queue_count.max(0) as usize);
    for queue_id in 0..topic.queue_count.max(0) as u32 {
        let (min, next) = broker
            .store()
            .queue_bounds(&req.topic, queue_id)
            .map_err(store_err)?;
        let new_offset = match to {
            To::Earliest(_) => min,
            To::Latest(_) => next,
            To::TimestampMs(ts) => broker
                .store()
                .queue_offset_for_time(&req.topic, queue_id, ts)
                .map_err(store_err)?
                .clamp(min, next),
        };
        let before = broker
            .consume()
            .position(&req.group, &req.topic, queue_id, min);
        queues.push(QueueReset {
            broker_name: broker.config().broker_name.clone(),
            queue_id,
            current_offset: before.committed,
            new_offset,
            inflight: before.inflight,
        });
    }
    if req.execute {
        for q in &queues {
            broker
                .consume()
                .reset_queue(&req.group, &req.topic, q.queue_id, q.new_offset)?;
        }
        tracing::info!(
            group = %req.group, topic = %req.topic, ?to, by,
            "reset the group's offsets on {} queues", queues.len()
        );
    }
    Ok(ResetGroupOffsetResponse {
        queues,
        executed: req.execute,
    })
}

pub fn list_clients(broker: &Broker) -> ListClientsResponse {
    let c = &broker.config();
    let at = if c.broker_id == 0 {
        c.broker_name.clone()
    } else {
        format!("{}#{}", c.broker_name, c.broker_id)
    };
    ListClientsResponse {
        clients: broker
            .sessions()
            .list()
            .iter()
            .map(|s| s.to_connected_client(&at))
            .chain(broker.remoting_clients().connected_clients(&at))
            .collect(),
    }
}

pub fn get_config(broker: &Broker) -> Result<GetBrokerConfigResponse, ApogeeError> {
    let effective = crate::runtime_config::effective(&broker.runtime_owners());
    let toml = toml::to_string_pretty(&effective)
        .map_err(|e| ApogeeError::Internal(format!("rendering the config: {e}")))?;
    Ok(GetBrokerConfigResponse {
        toml,
        runtime: crate::runtime_config::settings(&broker.runtime_owners())?,
    })
}

/// Changes one runtime setting of the group; only its master does (a slave runs with what
/// its master keeps, [`crate::runtime_config`]), so a slave refuses, naming its master.
pub fn update_config(
    broker: &Broker,
    req: UpdateBrokerConfigRequest,
) -> Result<UpdateBrokerConfigResponse, ApogeeError> {
    if !broker.membership().is_master() {
        let name = &broker.config().broker_name;
        let master = broker
            .replication()
            .master_link()
            .map(|l| l.endpoint)
            .filter(|e| !e.is_empty())
            .map_or_else(
                || "its master".to_string(),
                |e| format!("its master at {e}"),
            );
        return Err(ApogeeError::PreconditionFailed(format!(
            "member {} of broker group {name} is not the master: runtime settings are the \
             group's, set on {master} (`apogee broker config set {name} ...`), which keeps \
             them and passes them to every member",
            broker.config().broker_id
        )));
    }
    let (setting, previous) =
        crate::runtime_config::update(&broker.runtime_owners(), &req.key, &req.value)?;
    Ok(UpdateBrokerConfigResponse {
        setting: Some(setting),
        previous,
    })
}
