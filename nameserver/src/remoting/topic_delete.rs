//! DELETE_TOPIC_IN_NAMESRV (`topic`, `clusterName` optional): the NameServers' part of
//! `mqadmin deleteTopic`, sent once the masters deleted the topic (DELETE_TOPIC_IN_BROKER).
//! The NameServer forgets the topic on every broker group (of that cluster, when named) at
//! once, so routes and topic lists drop it without waiting for the brokers' next
//! registrations; a broker that still hosts the topic lists it again at its next
//! registration (the NameServer only presents what brokers register). For an admin caller
//! only where authentication is on.

use super::missing;
use crate::registry::Registry;
use apogee_proto::remoting::RemotingCommand;
use apogee_proto::ApogeeError;
use apogee_server::remoting::Caller;

/// Answers DELETE_TOPIC_IN_NAMESRV.
pub fn delete_topic(
    registry: &Registry,
    caller: &Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    if !caller.is_admin() {
        return RemotingCommand::refusal(
            request,
            &ApogeeError::Forbidden(format!(
                "request code {} changes the cluster's configuration: it needs an admin user",
                request.code
            )),
        );
    }
    let Some(topic) = request.ext("topic") else {
        return missing(request, "topic");
    };
    let cluster = request.ext("clusterName").filter(|c| !c.is_empty());
    let groups = registry.forget_topic(topic, cluster);
    tracing::info!(
        topic,
        cluster,
        groups,
        "topic forgotten at a remoting admin's request"
    );
    RemotingCommand::success(request)
}
