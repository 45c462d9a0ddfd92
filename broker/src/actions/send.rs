//! [`Broker::send`]: one send request's messages stored through the producer service
//! (`crate::produce`: validation, admission, auto-create, lite and priority routing,
//! transactions' halves, the schedule, replication), then counted in the broker's metrics,
//! whichever transport they came over.

use crate::produce::{Outgoing, Sender, Sent};
use crate::services::Broker;
use apogee_proto::v2::MessageType;
use apogee_proto::ApogeeError;

/// What the metrics count of a stored request: its topic, its first message's declared
/// type (a request's messages share both) and the body sizes.
struct Counted {
    topic: String,
    message_type: MessageType,
    sizes: Vec<usize>,
}

impl Counted {
    fn of(messages: &[Outgoing]) -> Counted {
        let first = messages.first();
        Counted {
            topic: first.map_or_else(String::new, |m| m.topic.clone()),
            message_type: first
                .and_then(|m| MessageType::try_from(m.message_type).ok())
                .unwrap_or(MessageType::Normal),
            sizes: messages.iter().map(|m| m.body.len()).collect(),
        }
    }
}

impl Broker {
    /// Stores the messages of one send request from `sender`: all of them, or none and the
    /// error of the first that is refused (`crate::produce::Producer::send`). A stored
    /// request is counted in the metrics; a failure of the broker's own is logged.
    pub async fn send(
        &self,
        messages: Vec<Outgoing>,
        sender: &Sender<'_>,
    ) -> Result<Sent, ApogeeError> {
        let counted = Counted::of(&messages);
        match self.producer().send(messages, sender).await {
            Ok(sent) => {
                self.metrics()
                    .stored(&counted.topic, counted.message_type, counted.sizes);
                Ok(sent)
            }
            Err(e) => {
                if matches!(e, ApogeeError::Internal(_) | ApogeeError::InternalCause(_)) {
                    tracing::error!(
                        topic = counted.topic,
                        client_id = sender.client_id,
                        messages = counted.sizes.len(),
                        "send failed: {e}"
                    );
                }
                Err(e)
            }
        }
    }
}
