//! Sends over remoting frames ([`RemotingSends`]): what a [`crate::Producer`] configured with
//! [`crate::config::SendTransport::Remoting`] uses for the messages the remoting protocol
//! carries.
//!
//! A topic's route comes from a NameServer as GET_ROUTEINFO_BY_TOPIC (RocketMQ's
//! `TopicRouteData`): the queues of every broker group whose queues are writable, at its
//! master's remoting address. It is kept for [`ROUTE_TTL`] and fetched again after a failed
//! send. Queues are taken round-robin; a send that failed in a way that may be resent (see
//! `producer::may_resend`) goes again to another broker group, up to the config's attempts.
//!
//! One message is SEND_MESSAGE_V2, a batch SEND_BATCH_MESSAGE (RocketMQ's batch body), both
//! in RocketMQ's binary header. The message id is the client's (`UNIQ_KEY`), tag and keys are
//! `TAGS` and `KEYS`, a delivery time is `__STARTDELIVERTIME`, user properties go as they
//! are; a user property that RocketMQ reserves, or whose text holds the properties string's
//! separators, is refused before anything is sent. With credentials, every request carries
//! RocketMQ's ACL signature.

use super::link::Links;
use crate::message::Message;
use crate::producer::{backoff, may_resend, SendReceipt};
use crate::route::{select_avoiding, ROUTE_TTL};
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::auth::Credentials;
use apogee_proto::remoting::codes::{error_of, request as code};
use apogee_proto::remoting::frame::FrameLimits;
use apogee_proto::remoting::message::{
    encode_batch_entry, properties_to_string, property, BatchEntry, Properties,
    NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR,
};
use apogee_proto::remoting::route::{perm, TopicRouteData};
use apogee_proto::remoting::signature::sign_request;
use apogee_proto::remoting::{RemotingCommand, Serialization};
use apogee_proto::ApogeeError;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The producer group remoting sends name (RocketMQ's default producer group): Apogee keeps
/// none per producer; only a transaction's check-back would ask it.
pub const PRODUCER_GROUP: &str = "DEFAULT_PRODUCER";

/// One writable queue: its broker group, id and the master's remoting address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendQueue {
    pub broker_name: String,
    pub queue_id: i32,
    pub addr: String,
}

/// The writable queues of a route, broker group by broker group (queue ids in order).
pub fn writable_queues(route: &TopicRouteData) -> Vec<SendQueue> {
    let mut queues = Vec::new();
    for q in &route.queue_datas {
        if q.perm & perm::WRITE == 0 {
            continue;
        }
        let master = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.addrs.get(&0));
        let Some(addr) = master else { continue };
        queues.extend((0..q.write_queue_nums).map(|queue_id| SendQueue {
            broker_name: q.broker_name.clone(),
            queue_id,
            addr: addr.clone(),
        }));
    }
    queues
}

/// Whether the remoting protocol carries `message` as Apogee stores it: not a FIFO, lite or
/// priority message (those are gRPC fields with no remoting spelling).
pub fn carries(message: &Message) -> bool {
    message.message_group.is_none() && message.lite_topic.is_none() && message.priority.is_none()
}

/// The properties of `message` as a remoting send writes them, with its id.
pub fn properties_of(message: &Message, message_id: &str) -> Result<Properties> {
    let mut props = Properties::new();
    for (name, value) in &message.properties {
        if property::is_system(name) {
            return Err(ApogeeError::IllegalProperty(format!(
                "property {name:?} is reserved by the remoting protocol"
            ))
            .into());
        }
        let separators = [NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR];
        if name.contains(separators) || value.contains(separators) {
            return Err(ApogeeError::IllegalProperty(format!(
                "property {name:?} holds U+0001 or U+0002, the remoting properties' separators"
            ))
            .into());
        }
        props.insert(name.clone(), value.clone());
    }
    props.insert(property::UNIQ_KEY.into(), message_id.to_string());
    if let Some(tag) = &message.tag {
        props.insert(property::TAGS.into(), tag.clone());
    }
    if !message.keys.is_empty() {
        props.insert(property::KEYS.into(), message.keys.join(" "));
    }
    if let Some(at) = message.delivery_timestamp {
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        props.insert(property::START_DELIVER_TIME.into(), ms.to_string());
    }
    props.insert(property::WAIT.into(), "true".into());
    Ok(props)
}

/// The send request of `messages` (one topic, ids in order) to `queue`.
pub fn send_request(
    topic: &str,
    queue_id: i32,
    messages: &[Message],
    ids: &[String],
) -> Result<RemotingCommand> {
    let born = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let batch = messages.len() > 1;
    let mut request = RemotingCommand::request(if batch {
        code::SEND_BATCH_MESSAGE
    } else {
        code::SEND_MESSAGE_V2
    });
    request.serialization = Serialization::Binary;
    let fields = &mut request.ext_fields;
    fields.insert("a", PRODUCER_GROUP);
    fields.insert("b", topic);
    fields.insert("c", "TBW102");
    fields.insert("d", "4");
    fields.insert_display("e", queue_id);
    fields.insert("f", "0");
    fields.insert_display("g", born);
    fields.insert("h", "0");
    fields.insert("j", "0");
    fields.insert("k", "false");
    fields.insert("m", if batch { "true" } else { "false" });
    if batch {
        let mut body = BytesMut::new();
        for (m, id) in messages.iter().zip(ids) {
            let entry = BatchEntry {
                flag: 0,
                body: m.body.clone(),
                properties: properties_of(m, id)?,
            };
            encode_batch_entry(&entry, &mut body)
                .map_err(|e| ClientError::Config(format!("a batch entry: {e}")))?;
        }
        request.ext_fields.insert("i", "");
        request.body = body.freeze();
    } else {
        let props = properties_of(&messages[0], &ids[0])?;
        request.ext_fields.insert("i", properties_to_string(&props));
        request.body = messages[0].body.clone();
    }
    Ok(request)
}

/// The receipts of a send's answer (`ids` in order; a batch's offsets follow its first).
pub fn receipts(
    answer: &RemotingCommand,
    queue: &SendQueue,
    ids: &[String],
) -> Result<Vec<SendReceipt>> {
    if let Some(error) = error_of(answer.code, answer.remark.as_deref().unwrap_or("")) {
        return Err(error.into());
    }
    let field = |name: &str| {
        answer.ext(name).ok_or_else(|| {
            ClientError::Transport(format!("a send answer from {} without {name}", queue.addr))
        })
    };
    let number = |name: &str| -> Result<i64> {
        field(name)?.trim().parse().map_err(|_| {
            ClientError::Transport(format!(
                "a send answer from {} with a bad {name}",
                queue.addr
            ))
        })
    };
    let queue_id = number("queueId")? as i32;
    let first = number("queueOffset")?;
    // A scheduled message's handle (a batch's messages are answered with none).
    let recall_handle = match ids.len() {
        1 => answer.ext("recallHandle").unwrap_or("").to_string(),
        _ => String::new(),
    };
    Ok(ids
        .iter()
        .enumerate()
        .map(|(i, id)| SendReceipt {
            message_id: id.clone(),
            queue_id,
            offset: first + i as i64,
            broker_name: queue.broker_name.clone(),
            recall_handle: recall_handle.clone(),
            endpoint: queue.addr.clone(),
        })
        .collect())
}

/// A topic's writable queues, when fetched.
struct CachedRoute {
    queues: Arc<Vec<SendQueue>>,
    fetched: Instant,
}

/// A producer's sends over remoting: its connections and routes.
pub struct RemotingSends {
    nameservers: Vec<String>,
    credentials: Option<Credentials>,
    request_timeout: std::time::Duration,
    max_attempts: u32,
    links: Links,
    routes: Mutex<HashMap<String, CachedRoute>>,
    next: AtomicUsize,
}

impl RemotingSends {
    pub fn new(config: &ClientConfig) -> RemotingSends {
        RemotingSends {
            nameservers: config.nameservers.clone(),
            credentials: config.credentials.clone(),
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts.max(1),
            links: Links::new(config.request_timeout, FrameLimits::default()),
            routes: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        }
    }

    /// Closes the connections.
    pub fn close(&self) {
        self.links.close();
    }

    /// Sends `request` (signed when the config has credentials) to `addr`.
    async fn call(&self, addr: &str, mut request: RemotingCommand) -> Result<RemotingCommand> {
        if let Some(c) = &self.credentials {
            sign_request(&mut request, c.access_key(), c.secret_key());
        }
        let link = self.links.get(addr).await?;
        link.request(request, self.request_timeout).await
    }

    /// The writable queues of `topic`, from the cache or a NameServer.
    async fn queues(&self, topic: &str) -> Result<Arc<Vec<SendQueue>>> {
        if let Some(cached) = self.routes.lock().get(topic) {
            if cached.fetched.elapsed() < ROUTE_TTL {
                return Ok(cached.queues.clone());
            }
        }
        let mut last = ClientError::NoRoute("no NameServer configured".into());
        for ns in &self.nameservers {
            let request =
                RemotingCommand::request(code::GET_ROUTEINFO_BY_TOPIC).with_ext("topic", topic);
            let answer = match self.call(ns, request).await {
                Ok(answer) => answer,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            if let Some(error) = error_of(answer.code, answer.remark.as_deref().unwrap_or("")) {
                return Err(error.into());
            }
            let route = TopicRouteData::from_json(&answer.body)
                .map_err(|e| ClientError::Transport(format!("the route from {ns}: {e}")))?;
            let queues = Arc::new(writable_queues(&route));
            self.routes.lock().insert(
                topic.to_string(),
                CachedRoute {
                    queues: queues.clone(),
                    fetched: Instant::now(),
                },
            );
            return Ok(queues);
        }
        Err(last)
    }

    /// Sends `messages` (checked already: one topic, none FIFO, lite or priority) as one
    /// request, retrying on another broker group as the gRPC path does.
    pub async fn send(&self, messages: &[Message], ids: &[String]) -> Result<Vec<SendReceipt>> {
        let topic = &messages[0].topic;
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut avoid: Vec<String> = Vec::new();
        let mut attempt = 0u32;
        loop {
            let queues = self.queues(topic).await?;
            let Some(queue) = pick(&queues, start + attempt as usize, &avoid) else {
                self.routes.lock().remove(topic);
                return Err(ClientError::NoRoute(format!(
                    "topic {topic} has no writable queue"
                )));
            };
            let request = send_request(topic, queue.queue_id, messages, ids)?;
            let result = match self.call(&queue.addr, request).await {
                Ok(answer) => receipts(&answer, queue, ids),
                Err(e) => Err(e),
            };
            attempt += 1;
            match result {
                Ok(receipts) => return Ok(receipts),
                Err(e) if may_resend(&e) && attempt < self.max_attempts => {
                    tracing::debug!(topic, broker = %queue.broker_name, attempt, error = %e,
                        "remoting send failed, retrying");
                    self.routes.lock().remove(topic);
                    if !avoid.contains(&queue.broker_name) {
                        avoid.push(queue.broker_name.clone());
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    if matches!(e, ClientError::Transport(_) | ClientError::Server(_)) {
                        self.routes.lock().remove(topic);
                    }
                    return Err(e);
                }
            }
        }
    }
}

/// The `n`th queue round-robin, or the next one of a broker group not in `avoid`.
fn pick<'a>(queues: &'a [SendQueue], n: usize, avoid: &[String]) -> Option<&'a SendQueue> {
    select_avoiding(queues, n, avoid, |q| q.broker_name.as_str())
}

#[cfg(test)]
#[path = "sender_tests.rs"]
mod tests;
