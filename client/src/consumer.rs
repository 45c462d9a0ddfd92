//! The simple consumer: receives messages from the broker groups of a
//! topic's route, acknowledges them, and changes their invisible duration.
//!
//! `receive` never drops a message a broker handed out. It first asks each
//! broker group in turn (rotating the starting group) without long polling
//! and returns the first non-empty answer; when every group is empty and the
//! caller is willing to wait, it long-polls every group concurrently with the
//! same batch size and returns as soon as one group answers with messages,
//! together with the answers of any other group that arrived by then (which
//! can be more than `max_messages`, up to `max_messages` per broker group).
//! The polls still waiting are cancelled: a broker stops a cancelled long poll
//! without handing anything out (one cancelled in the instant it hands
//! messages out leaves them invisible until their invisible duration ends,
//! then they are delivered again), so a message on one group is never kept
//! waiting for another group's long poll to run out.
//!
//! A broker that creates the consumer's group on its first receive there says so
//! (`apogee_proto::group::GROUP_CREATED_HEADER`); [`SimpleConsumer::take_groups_created`]
//! hands those notices out, so a tool can tell a user that a group name was new.

use crate::core::Core;
use crate::message::{FilterExpression, ReceivedMessage};
use crate::route::BrokerTarget;
use crate::telemetry::Role;
use crate::transport::request;
use crate::{ClientConfig, ClientError, Result};
use apogee_proto::v2::receive_message_response::Content;
use apogee_proto::{limits, time::duration, v2, ApogeeError};
use futures::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A broker group that created the consumer's group on a receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCreated {
    pub broker_name: String,
    /// Where the new group starts reading there: `earliest` or `latest`.
    pub start: String,
}

/// Receives and acknowledges messages of a consumer group.
#[derive(Clone)]
pub struct SimpleConsumer {
    core: Arc<Core>,
    group: String,
    filters: Arc<HashMap<String, FilterExpression>>,
    next: Arc<AtomicUsize>,
    created: Arc<parking_lot::Mutex<Vec<GroupCreated>>>,
}

impl SimpleConsumer {
    /// Creates a consumer of `group` subscribed to the given topics.
    pub async fn connect(
        config: ClientConfig,
        group: impl Into<String>,
        subscriptions: Vec<(String, FilterExpression)>,
    ) -> Result<SimpleConsumer> {
        SimpleConsumer::connect_as(config, group.into(), subscriptions, false)
    }

    /// Creates the consumer, declaring itself a push consumer when `push`
    /// (the push consumer is built on this one).
    pub(crate) fn connect_as(
        config: ClientConfig,
        group: String,
        subscriptions: Vec<(String, FilterExpression)>,
        push: bool,
    ) -> Result<SimpleConsumer> {
        limits::validate_group(&group)?;
        if subscriptions.is_empty() {
            return Err(ClientError::Config(
                "subscribe to at least one topic".into(),
            ));
        }
        for (topic, filter) in &subscriptions {
            limits::validate_topic(topic)?;
            if filter.expression.trim().is_empty() {
                return Err(ApogeeError::IllegalFilterExpression(format!(
                    "empty filter for topic {topic}"
                ))
                .into());
            }
        }
        let declared = subscriptions
            .iter()
            .map(|(t, f)| (t.clone(), f.to_v2()))
            .collect();
        let role = if push {
            Role::PushConsumer {
                group: group.clone(),
                subscriptions: declared,
            }
        } else {
            Role::SimpleConsumer {
                group: group.clone(),
                subscriptions: declared,
            }
        };
        SimpleConsumer::with_role(config, group, subscriptions, role)
    }

    /// Creates the consumer declaring itself as `role` (the lite consumers are built on
    /// this one too); the arguments are checked by the callers.
    pub(crate) fn with_role(
        config: ClientConfig,
        group: String,
        subscriptions: Vec<(String, FilterExpression)>,
        role: Role,
    ) -> Result<SimpleConsumer> {
        Ok(SimpleConsumer {
            core: Core::start(config, role, None)?,
            group,
            filters: Arc::new(subscriptions.into_iter().collect()),
            next: Arc::new(AtomicUsize::new(rand::random::<u16>() as usize)),
            created: Arc::default(),
        })
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.core.config
    }

    /// The broker groups that created this consumer's group on a receive since the last
    /// call (the group did not exist there).
    pub fn take_groups_created(&self) -> Vec<GroupCreated> {
        std::mem::take(&mut *self.created.lock())
    }

    /// Receives up to `max_messages` (1 to 64) messages of a subscribed
    /// topic, hidden from other consumers for `invisible_duration`, waiting
    /// up to `wait` (at most 30 s) when none is available. See the module
    /// documentation for how many messages can come back.
    pub async fn receive(
        &self,
        topic: &str,
        max_messages: u32,
        invisible_duration: Duration,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let filter = self.filters.get(topic).ok_or_else(|| {
            ClientError::Config(format!("topic {topic} is not subscribed by this consumer"))
        })?;
        check_receive_args(max_messages, invisible_duration)?;
        let wait = wait.min(Duration::from_millis(limits::MAX_LONG_POLLING_MS as u64));
        let route = self.core.route(topic).await?;
        let targets = route.readable_brokers();
        if targets.is_empty() {
            return Err(ClientError::NoRoute(format!(
                "topic {topic} has no readable queue"
            )));
        }
        let ask = Ask {
            topic,
            filter: filter.to_v2(),
            batch: max_messages as i32,
            invisible: Some(invisible_duration),
        };
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut errors = Vec::new();
        for i in 0..targets.len() {
            let target = &targets[(start + i) % targets.len()];
            let (messages, err) = self.receive_from(target, &ask, Duration::ZERO).await;
            if let Some(e) = err {
                self.note_failure(topic, target, &e);
                errors.push(e);
            }
            if !messages.is_empty() {
                return Ok(messages);
            }
        }
        if !wait.is_zero() {
            errors.clear();
            let mut polls: futures::stream::FuturesUnordered<_> = targets
                .iter()
                .map(|t| {
                    self.receive_from(t, &ask, wait)
                        .map(move |answer| (t, answer))
                })
                .collect();
            let mut all = Vec::new();
            // The first group to answer with messages ends the wait; polls that have
            // answered too by then are taken as well, the others are cancelled.
            while let Some((target, (messages, err))) = polls.next().await {
                let mut answer = Some((target, messages, err));
                while let Some((target, messages, err)) = answer.take() {
                    all.extend(messages);
                    if let Some(e) = err {
                        self.note_failure(topic, target, &e);
                        errors.push(e);
                    }
                    if !all.is_empty() {
                        answer = polls
                            .next()
                            .now_or_never()
                            .flatten()
                            .map(|(t, (m, e))| (t, m, e));
                    }
                }
                if !all.is_empty() {
                    break;
                }
            }
            drop(polls);
            if !all.is_empty() {
                return Ok(all);
            }
        }
        if errors.len() == targets.len() {
            return Err(errors.swap_remove(0));
        }
        Ok(Vec::new())
    }

    /// The shared client state (for the push consumer).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// One ReceiveMessage of up to `batch` messages of a subscribed topic
    /// against one broker group, long-polling for `wait`; returns what
    /// arrived and the error, if any (the route is marked stale after a
    /// retryable one).
    pub(crate) async fn receive_once(
        &self,
        target: &BrokerTarget,
        topic: &str,
        batch: u32,
        invisible_duration: Option<Duration>,
        wait: Duration,
    ) -> (Vec<ReceivedMessage>, Option<ClientError>) {
        let Some(filter) = self.filters.get(topic) else {
            let e = ClientError::Config(format!("topic {topic} is not subscribed"));
            return (Vec::new(), Some(e));
        };
        let ask = Ask {
            topic,
            filter: filter.to_v2(),
            batch: batch.clamp(1, limits::MAX_RECEIVE_BATCH as u32) as i32,
            invisible: invisible_duration,
        };
        let (messages, err) = self.receive_from(target, &ask, wait).await;
        if let Some(e) = &err {
            self.note_failure(topic, target, e);
        }
        (messages, err)
    }

    fn note_failure(&self, topic: &str, target: &BrokerTarget, e: &ClientError) {
        tracing::debug!(topic, broker = %target.broker_name, error = %e, "receive failed");
        if e.may_mean_stale_route() {
            self.core.routes.invalidate(topic);
        }
    }

    /// One ReceiveMessage against one broker group; returns what arrived
    /// even when the stream failed part way.
    async fn receive_from(
        &self,
        target: &BrokerTarget,
        ask: &Ask<'_>,
        long_poll: Duration,
    ) -> (Vec<ReceivedMessage>, Option<ClientError>) {
        let mut out = Vec::new();
        let msg = v2::ReceiveMessageRequest {
            group: Some(self.core.resource(&self.group)),
            message_queue: Some(v2::MessageQueue {
                topic: Some(self.core.resource(ask.topic)),
                id: -1,
                permission: v2::Permission::ReadWrite as i32,
                broker: Some(target.broker.clone()),
                accept_message_types: Vec::new(),
            }),
            filter_expression: Some(ask.filter.clone()),
            batch_size: ask.batch,
            invisible_duration: ask.invisible.map(duration),
            auto_renew: ask.invisible.is_none(),
            long_polling_timeout: Some(duration(long_poll)),
            attempt_id: Some(uuid::Uuid::new_v4().to_string()),
        };
        let deadline = long_poll + self.core.config.request_timeout;
        let mut client = match self.core.client(&target.endpoint).await {
            Ok(c) => c,
            Err(e) => return (out, Some(e)),
        };
        let req = request(&self.core.config, msg, deadline);
        let read = async {
            let response = client.receive_message(req).await?;
            let created = response
                .metadata()
                .get(apogee_proto::group::GROUP_CREATED_HEADER)
                .and_then(|v| v.to_str().ok());
            if let Some(start) = created {
                self.created.lock().push(GroupCreated {
                    broker_name: target.broker_name.clone(),
                    start: start.to_string(),
                });
            }
            let mut stream = response.into_inner();
            let mut status = None;
            while let Some(item) = stream.message().await? {
                match item.content {
                    Some(Content::Message(m)) => out.push(ReceivedMessage::from_v2(
                        m,
                        &target.broker_name,
                        &target.endpoint,
                    )),
                    Some(Content::Status(s)) => status = Some(s),
                    Some(Content::DeliveryTimestamp(_)) | None => {}
                }
            }
            Ok::<_, ClientError>(status)
        };
        let result = tokio::time::timeout(deadline + Duration::from_millis(500), read).await;
        let err = match result {
            Err(_) => Some(ClientError::Timeout),
            Ok(Err(e)) => Some(e),
            Ok(Ok(status)) => receive_status_error(status.as_ref()),
        };
        (out, err)
    }

    /// Acknowledges one message.
    pub async fn ack(&self, message: &ReceivedMessage) -> Result<()> {
        self.ack_many(std::slice::from_ref(message))
            .await
            .pop()
            .unwrap_or_else(|| Err(ClientError::Transport("no ack result".into())))
    }

    /// Acknowledges messages with one AckMessage per broker and topic;
    /// returns one result per message, in order.
    pub async fn ack_many(&self, messages: &[ReceivedMessage]) -> Vec<Result<()>> {
        let mut groups: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        for (i, m) in messages.iter().enumerate() {
            groups
                .entry((m.endpoint.as_str(), m.topic.as_str()))
                .or_default()
                .push(i);
        }
        let calls = groups
            .into_iter()
            .map(|((endpoint, topic), idx)| async move {
                let batch: Vec<&ReceivedMessage> = idx.iter().map(|&i| &messages[i]).collect();
                (idx, self.ack_at(endpoint, topic, &batch).await)
            });
        let mut results: Vec<Option<Result<()>>> = vec![None; messages.len()];
        for (idx, res) in futures::future::join_all(calls).await {
            for (i, r) in idx.into_iter().zip(res) {
                results[i] = Some(r);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ClientError::Transport("no ack result".into()))))
            .collect()
    }

    async fn ack_at(
        &self,
        endpoint: &str,
        topic: &str,
        batch: &[&ReceivedMessage],
    ) -> Vec<Result<()>> {
        let req = v2::AckMessageRequest {
            group: Some(self.core.resource(&self.group)),
            topic: Some(self.core.resource(topic)),
            entries: batch
                .iter()
                .map(|m| v2::AckMessageEntry {
                    message_id: m.message_id.clone(),
                    receipt_handle: m.receipt_handle.clone(),
                    lite_topic: m.lite_topic.clone(),
                })
                .collect(),
        };
        let res = self
            .core
            .call(
                endpoint,
                req,
                self.core.config.request_timeout,
                |mut c, r| async move { c.ack_message(r).await },
            )
            .await;
        match res {
            Ok(resp) => ack_results(resp, batch),
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// Changes how long a received message stays hidden; returns the new
    /// receipt handle, which replaces the old one for later calls.
    pub async fn change_invisible_duration(
        &self,
        message: &ReceivedMessage,
        invisible_duration: Duration,
    ) -> Result<String> {
        check_invisible(invisible_duration)?;
        let req = v2::ChangeInvisibleDurationRequest {
            group: Some(self.core.resource(&self.group)),
            topic: Some(self.core.resource(&message.topic)),
            receipt_handle: message.receipt_handle.clone(),
            invisible_duration: Some(duration(invisible_duration)),
            message_id: message.message_id.clone(),
            lite_topic: message.lite_topic.clone(),
            suspend: None,
        };
        let resp = self
            .core
            .call(
                &message.endpoint,
                req,
                self.core.config.request_timeout,
                |mut c, r| async move { c.change_invisible_duration(r).await },
            )
            .await?;
        ClientError::check(resp.status.as_ref())?;
        if resp.receipt_handle.is_empty() {
            return Err(ClientError::Transport(
                "no receipt handle in the answer".into(),
            ));
        }
        Ok(resp.receipt_handle)
    }

    /// Notifies the servers and closes the telemetry streams.
    pub async fn shutdown(self) {
        self.core.shutdown().await;
    }
}

/// What one receive asks every broker group for.
struct Ask<'a> {
    topic: &'a str,
    filter: v2::FilterExpression,
    batch: i32,
    /// None: the broker keeps the messages invisible until acked or nacked
    /// (`auto_renew`, what push consumers ask for).
    invisible: Option<Duration>,
}

fn check_invisible(d: Duration) -> Result<()> {
    let ms = d.as_millis() as i64;
    if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&ms) {
        return Err(ApogeeError::IllegalInvisibleTime(format!(
            "{ms} ms is outside {}..={} ms",
            limits::MIN_INVISIBLE_MS,
            limits::MAX_INVISIBLE_MS
        ))
        .into());
    }
    Ok(())
}

fn check_receive_args(max_messages: u32, invisible: Duration) -> Result<()> {
    if max_messages == 0 || max_messages > limits::MAX_RECEIVE_BATCH as u32 {
        return Err(ClientError::Config(format!(
            "max messages must be between 1 and {}, got {max_messages}",
            limits::MAX_RECEIVE_BATCH
        )));
    }
    check_invisible(invisible)
}

/// The error a receive stream's final status means (none for OK and for
/// "no message arrived").
fn receive_status_error(status: Option<&v2::Status>) -> Option<ClientError> {
    let s = status?;
    match ApogeeError::from_status(s) {
        None | Some(ApogeeError::MessageNotFound(_)) => None,
        Some(e) => Some(ClientError::Server(e)),
    }
}

/// One result per acked message: the entry's own status, matched by
/// position (or by receipt handle when the answer is shorter).
fn ack_results(resp: v2::AckMessageResponse, batch: &[&ReceivedMessage]) -> Vec<Result<()>> {
    let top = ClientError::check(resp.status.as_ref());
    if resp.entries.len() == batch.len() {
        return resp
            .entries
            .iter()
            .map(|e| match &e.status {
                Some(s) => ClientError::check(Some(s)),
                None => top.clone(),
            })
            .collect();
    }
    batch
        .iter()
        .map(|m| {
            match resp
                .entries
                .iter()
                .find(|e| e.receipt_handle == m.receipt_handle)
            {
                Some(e) => ClientError::check(e.status.as_ref()),
                None if top.is_err() => top.clone(),
                None => Err(ClientError::Transport(format!(
                    "no ack result for message {}",
                    m.message_id
                ))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::error::ok_status;

    fn received(handle: &str) -> ReceivedMessage {
        ReceivedMessage::from_v2(
            v2::Message {
                system_properties: Some(v2::SystemProperties {
                    message_id: format!("ID-{handle}"),
                    receipt_handle: Some(handle.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "b",
            "h:1",
        )
    }

    fn ack_entry(handle: &str, status: v2::Status) -> v2::AckMessageResultEntry {
        v2::AckMessageResultEntry {
            message_id: String::new(),
            receipt_handle: handle.into(),
            status: Some(status),
        }
    }

    #[test]
    fn ack_results_are_per_entry() {
        let (a, b) = (received("a"), received("b"));
        let resp = v2::AckMessageResponse {
            status: Some(ok_status()),
            entries: vec![
                ack_entry("a", ok_status()),
                ack_entry(
                    "b",
                    ApogeeError::InvalidReceiptHandle("b".into()).to_status(),
                ),
            ],
        };
        let r = ack_results(resp, &[&a, &b]);
        assert!(r[0].is_ok());
        assert_eq!(
            r[1].as_ref().unwrap_err().code(),
            Some(v2::Code::InvalidReceiptHandle)
        );
    }

    #[test]
    fn short_ack_answers_match_by_handle_or_use_the_top_status() {
        let (a, b) = (received("a"), received("b"));
        let resp = v2::AckMessageResponse {
            status: Some(ok_status()),
            entries: vec![ack_entry("b", ok_status())],
        };
        let r = ack_results(resp, &[&a, &b]);
        assert!(matches!(r[0], Err(ClientError::Transport(_))));
        assert!(r[1].is_ok());
        let resp = v2::AckMessageResponse {
            status: Some(ApogeeError::Internal("x".into()).to_status()),
            entries: vec![],
        };
        assert!(ack_results(resp, &[&a, &b]).iter().all(|r| r.is_err()));
    }

    #[test]
    fn empty_receive_is_not_an_error() {
        let not_found = ApogeeError::MessageNotFound("none".into()).to_status();
        assert!(receive_status_error(Some(&not_found)).is_none());
        assert!(receive_status_error(Some(&ok_status())).is_none());
        assert!(receive_status_error(None).is_none());
        let bad = ApogeeError::ConsumerGroupNotFound("g".into()).to_status();
        assert!(receive_status_error(Some(&bad)).is_some());
    }

    #[test]
    fn receive_arguments_are_checked() {
        let s = Duration::from_secs(30);
        assert!(check_receive_args(1, s).is_ok());
        assert!(check_receive_args(64, s).is_ok());
        assert!(check_receive_args(0, s).is_err());
        assert!(check_receive_args(65, s).is_err());
        assert!(check_receive_args(1, Duration::from_millis(999)).is_err());
        assert!(check_receive_args(1, Duration::from_secs(13 * 3600)).is_err());
    }
}
