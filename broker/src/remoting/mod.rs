//! The broker's answers to RocketMQ remoting clients (4.x producers and consumers, and the
//! 5.x remoting clients): transport only, as `grpc/` is for gRPC. Each request's handler
//! reads the request's extension fields (and body), calls one domain service (the producer,
//! the consume engine, the transactions, the schedule, the store's queries) and encodes the
//! answer; nothing here keeps state of its own but the remoting clients' table
//! ([`clients`]: who is connected, their producer and consumer groups, for check-backs,
//! rebalance notices and the clients list).
//!
//! A message sent by one protocol is received by the other, and a group's offsets are the
//! same whichever protocol commits them: both transports call the same services.

pub mod admin_writes;
pub mod args;
pub mod broker_reads;
pub mod check_client;
pub mod clients;
pub mod convert;
pub mod group_reads;
pub mod lock;
pub mod offsets;
pub mod pop;
pub mod pull;
pub mod query;
pub mod send;
pub mod send_back;
pub mod topic_reads;
pub mod txn;

use crate::services::Broker;
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::RemotingCommand;
use apogee_server::remoting::{Caller, RemotingConnection, RemotingFuture, RemotingService};
use std::sync::Arc;

/// The broker's [`RemotingService`].
pub struct BrokerRemoting {
    broker: Arc<Broker>,
}

impl BrokerRemoting {
    pub fn new(broker: Arc<Broker>) -> BrokerRemoting {
        // Check-backs no gRPC producer takes go to the remoting producers of the message's
        // producer group.
        let clients = broker.remoting_clients().clone();
        broker
            .txns()
            .set_producer_check_back(Arc::new(txn::RemotingCheckBacks::new(move |group| {
                clients.producers_of(group)
            })));
        BrokerRemoting { broker }
    }
}

impl RemotingService for BrokerRemoting {
    fn call(
        &self,
        conn: &Arc<RemotingConnection>,
        caller: Caller,
        request: RemotingCommand,
    ) -> RemotingFuture {
        let broker = self.broker.clone();
        let conn = conn.clone();
        Box::pin(async move { Some(dispatch(&broker, &conn, &caller, request).await) })
    }

    fn closed(&self, conn: &Arc<RemotingConnection>) {
        clients::connection_closed(&self.broker, conn);
    }
}

/// One request to its handler.
async fn dispatch(
    broker: &Arc<Broker>,
    conn: &Arc<RemotingConnection>,
    caller: &Caller,
    request: RemotingCommand,
) -> RemotingCommand {
    use apogee_proto::remoting::codes::request as code;
    match request.code {
        code::HEART_BEAT => clients::heartbeat(broker, conn, caller, &request),
        code::UNREGISTER_CLIENT => clients::unregister_client(broker, conn, &request),
        code::GET_CONSUMER_LIST_BY_GROUP => {
            clients::consumer_list_by_group(broker, caller, &request)
        }
        code::PULL_MESSAGE | code::LITE_PULL_MESSAGE => {
            pull::pull_message(broker, conn, caller, &request).await
        }
        code::QUERY_CONSUMER_OFFSET => offsets::query_consumer_offset(broker, caller, &request),
        code::UPDATE_CONSUMER_OFFSET => offsets::update_consumer_offset(broker, caller, &request),
        code::GET_MIN_OFFSET => offsets::min_offset(broker, caller, &request),
        code::GET_MAX_OFFSET => offsets::max_offset(broker, caller, &request),
        code::SEARCH_OFFSET_BY_TIMESTAMP => {
            offsets::search_offset_by_timestamp(broker, caller, &request)
        }
        code::GET_EARLIEST_MSG_STORETIME => offsets::earliest_store_time(broker, caller, &request),
        code::SEND_MESSAGE | code::SEND_MESSAGE_V2 | code::SEND_BATCH_MESSAGE => {
            send::send_message(broker, conn, caller, request).await
        }
        code::END_TRANSACTION => txn::end_transaction(broker, caller, &request).await,
        code::VIEW_MESSAGE_BY_ID => query::view_message_by_id(broker, conn, caller, &request),
        code::QUERY_MESSAGE => query::query_message(broker, conn, caller, &request),
        code::LOCK_BATCH_MQ => lock::lock_batch(broker, caller, &request),
        code::UNLOCK_BATCH_MQ => lock::unlock_batch(broker, caller, &request),
        code::CHECK_CLIENT_CONFIG => check_client::check_client_config(&request),
        code::POP_MESSAGE => pop::pop_message(broker, conn, caller, &request).await,
        code::ACK_MESSAGE => pop::ack_message(broker, caller, &request),
        code::CHANGE_MESSAGE_INVISIBLETIME => pop::change_invisible_time(broker, caller, &request),
        code::CONSUMER_SEND_MSG_BACK => {
            send_back::consumer_send_back(broker, caller, &request).await
        }
        code::GET_TOPIC_STATS_INFO => topic_reads::topic_stats(broker, caller, &request),
        code::GET_TOPIC_CONFIG => topic_reads::topic_config(broker, caller, &request),
        code::GET_CONSUME_STATS => group_reads::consume_stats(broker, caller, &request),
        code::GET_CONSUMER_CONNECTION_LIST => {
            group_reads::consumer_connections(broker, caller, &request)
        }
        code::GET_ALL_CONSUMER_OFFSET => {
            group_reads::all_consumer_offsets(broker, caller, &request)
        }
        code::GET_ALL_SUBSCRIPTIONGROUP_CONFIG => {
            group_reads::all_subscription_groups(broker, caller, &request).await
        }
        code::GET_ALL_TOPIC_CONFIG => group_reads::all_topic_configs(broker, caller, &request),
        code::UPDATE_AND_CREATE_TOPIC => {
            admin_writes::update_and_create_topic(broker, caller, &request)
        }
        code::DELETE_TOPIC_IN_BROKER => admin_writes::delete_topic(broker, caller, &request).await,
        code::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP => {
            admin_writes::update_and_create_group(broker, caller, &request)
        }
        code::DELETE_SUBSCRIPTIONGROUP => admin_writes::delete_group(broker, caller, &request),
        code::INVOKE_BROKER_TO_RESET_OFFSET => admin_writes::reset_offset(broker, caller, &request),
        code::GET_BROKER_RUNTIME_INFO => broker_reads::runtime_info(broker, caller, &request),
        code::GET_BROKER_CONFIG => broker_reads::broker_config(broker, caller, &request),
        code::UPDATE_BROKER_CONFIG => broker_reads::update_broker_config(broker, caller, &request),
        code => RemotingCommand::error(
            &request,
            response::REQUEST_CODE_NOT_SUPPORTED,
            format!("request code {code} is not supported by Apogee (docs/COMPATIBILITY.md)"),
        ),
    }
}
