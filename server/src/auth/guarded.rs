//! What each messaging request needs permission for: the topics and groups it names and
//! whether it publishes or subscribes. Shared by the broker's handlers and the NameServer's
//! access point (which checks before it forwards with the cluster proof).
//!
//! Publishing: SendMessage (each message's topic), EndTransaction and RecallMessage (their
//! topic). Subscribing: ReceiveMessage, AckMessage, ChangeInvisibleDuration, PullMessage,
//! ForwardMessageToDeadLetterQueue and the offset RPCs, on the topic and on the group.

use apogee_proto::auth::acl::{authorize, Action, ResourceKind};
use apogee_proto::error::ApogeeError;
use apogee_proto::v2;

/// A messaging request that needs permission.
pub trait Guarded {
    const ACTION: Action;
    /// The resources the request acts on.
    fn resources(&self) -> Vec<(ResourceKind, &str)>;
}

/// Whether the caller of `request` may do what it asks (always, without authentication).
pub fn check<T: Guarded>(request: &tonic::Request<T>) -> Result<(), ApogeeError> {
    // Without authentication no call carries an identity: the send path then pays nothing,
    // not even the list of resources.
    if request
        .extensions()
        .get::<apogee_proto::auth::Identity>()
        .is_none()
    {
        return Ok(());
    }
    authorize(request, &request.get_ref().resources(), T::ACTION)
}

fn name(resource: &Option<v2::Resource>) -> &str {
    resource.as_ref().map_or("", |r| r.name.as_str())
}

fn queue_topic(queue: &Option<v2::MessageQueue>) -> &str {
    queue.as_ref().map_or("", |q| name(&q.topic))
}

impl Guarded for v2::SendMessageRequest {
    const ACTION: Action = Action::Pub;
    fn resources(&self) -> Vec<(ResourceKind, &str)> {
        let mut topics: Vec<(ResourceKind, &str)> = self
            .messages
            .iter()
            .map(|m| (ResourceKind::Topic, name(&m.topic)))
            .collect();
        topics.dedup();
        topics
    }
}

macro_rules! publishes_topic {
    ($($request:ty),*) => {$(
        impl Guarded for $request {
            const ACTION: Action = Action::Pub;
            fn resources(&self) -> Vec<(ResourceKind, &str)> {
                vec![(ResourceKind::Topic, name(&self.topic))]
            }
        }
    )*};
}

macro_rules! subscribes_topic {
    ($($request:ty),*) => {$(
        impl Guarded for $request {
            const ACTION: Action = Action::Sub;
            fn resources(&self) -> Vec<(ResourceKind, &str)> {
                vec![
                    (ResourceKind::Topic, name(&self.topic)),
                    (ResourceKind::Group, name(&self.group)),
                ]
            }
        }
    )*};
}

macro_rules! subscribes_queue {
    ($($request:ty),*) => {$(
        impl Guarded for $request {
            const ACTION: Action = Action::Sub;
            fn resources(&self) -> Vec<(ResourceKind, &str)> {
                vec![
                    (ResourceKind::Topic, queue_topic(&self.message_queue)),
                    (ResourceKind::Group, name(&self.group)),
                ]
            }
        }
    )*};
}

publishes_topic!(v2::EndTransactionRequest, v2::RecallMessageRequest);
subscribes_topic!(
    v2::AckMessageRequest,
    v2::ChangeInvisibleDurationRequest,
    v2::ForwardMessageToDeadLetterQueueRequest,
    v2::SyncLiteSubscriptionRequest
);
subscribes_queue!(
    v2::ReceiveMessageRequest,
    v2::PullMessageRequest,
    v2::UpdateOffsetRequest,
    v2::GetOffsetRequest
);

/// QueryOffset names no group: the topic only.
impl Guarded for v2::QueryOffsetRequest {
    const ACTION: Action = Action::Sub;
    fn resources(&self) -> Vec<(ResourceKind, &str)> {
        vec![(ResourceKind::Topic, queue_topic(&self.message_queue))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::acl::AclSet;
    use apogee_proto::auth::{Identity, Role};
    use apogee_proto::cluster::{AclEntry, AclResourceKind};
    use std::sync::Arc;

    fn resource(name: &str) -> Option<v2::Resource> {
        Some(v2::Resource {
            name: name.into(),
            ..Default::default()
        })
    }

    fn as_app<T>(message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.extensions_mut().insert(Identity::User {
            access_key: "app".into(),
            role: Role::User,
        });
        let entry = |kind: AclResourceKind, pattern: &str, publish, subscribe| AclEntry {
            access_key: "app".into(),
            kind: kind as i32,
            pattern: pattern.into(),
            publish,
            subscribe,
            ..Default::default()
        };
        request.extensions_mut().insert(Arc::new(AclSet::of(&[
            entry(AclResourceKind::Topic, "a", true, false),
            entry(AclResourceKind::Topic, "b", false, true),
            entry(AclResourceKind::Group, "g", false, true),
        ])));
        request
    }

    #[test]
    fn sends_need_pub_on_every_topic_and_consumption_sub_on_topic_and_group() {
        let message = |topic: &str| v2::Message {
            topic: resource(topic),
            ..Default::default()
        };
        let to_a = v2::SendMessageRequest {
            messages: vec![message("a"), message("a")],
        };
        check(&as_app(to_a)).unwrap();
        let to_a_and_b = v2::SendMessageRequest {
            messages: vec![message("a"), message("b")],
        };
        assert!(check(&as_app(to_a_and_b)).is_err());
        let ack = |topic: &str, group: &str| v2::AckMessageRequest {
            topic: resource(topic),
            group: resource(group),
            ..Default::default()
        };
        check(&as_app(ack("b", "g"))).unwrap();
        assert!(check(&as_app(ack("a", "g"))).is_err());
        assert!(check(&as_app(ack("b", "other"))).is_err());
        let receive = v2::ReceiveMessageRequest {
            group: resource("g"),
            message_queue: Some(v2::MessageQueue {
                topic: resource("b"),
                ..Default::default()
            }),
            ..Default::default()
        };
        check(&as_app(receive)).unwrap();
        let end = v2::EndTransactionRequest {
            topic: resource("b"),
            ..Default::default()
        };
        assert!(check(&as_app(end)).is_err());
    }
}
