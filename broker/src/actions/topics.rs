//! Topic deletion as one action that a crash at any point cannot leave half done.
//!
//! A topic's rows live with three owners: its config (`crate::topics`), the consume state of
//! the groups that read it (`crate::consume`) and its index in the store (consume queues,
//! queue heads, the key index, and the purge mark that keeps a rebuild from indexing its
//! records again). The config's deletion is written in one batch with a deletion mark
//! ([`crate::store::keys::topic_deleting_key`], a local `meta` row); the consume state and
//! the index are then dropped (both idempotent) and the mark removed. A start finds the
//! marks a crash left and finishes those deletions before the broker serves
//! ([`Broker::finish_interrupted_topic_deletes`]).
//!
//! Also here: the trace topic a master makes when message trace is on
//! ([`Broker::ensure_trace_topic`]).

use crate::services::Broker;
use apogee_proto::{names, ApogeeError};

impl Broker {
    /// Deletes `topic`: its config, the consume state of every group on it, its index.
    pub async fn delete_topic(&self, topic: &str) -> Result<(), ApogeeError> {
        apogee_proto::limits::validate_topic(topic)?;
        if names::is_system_topic(topic) {
            return Err(ApogeeError::Forbidden(format!("{topic} is a system topic")));
        }
        self.refuse_on_slave("a topic deletion")?;
        self.topics().delete(topic)?;
        self.drop_deleted_topic(topic).await
    }

    /// Finishes the topic deletions a crash interrupted (their configs are gone, their marks
    /// still there); returns how many. A broker that starts as a slave leaves them: its
    /// index is its master's to change, and it finishes them when it starts as a master.
    pub async fn finish_interrupted_topic_deletes(&self) -> Result<usize, ApogeeError> {
        if self.store().is_replica() {
            return Ok(0);
        }
        let unfinished = self.topics().unfinished_deletes()?;
        for topic in &unfinished {
            tracing::warn!(
                topic,
                "finishing the deletion of a topic that a stop interrupted"
            );
            self.drop_deleted_topic(topic).await?;
        }
        Ok(unfinished.len())
    }

    /// With message trace on (`trace.enabled`), makes the trace topic if it is missing, so
    /// the NameServers route it before a client's first trace record asks for its route. A
    /// master does it at start and on promotion; a slave follows its master's topics.
    pub fn ensure_trace_topic(&self) -> Result<(), ApogeeError> {
        if !self.config().trace.enabled || self.store().is_replica() {
            return Ok(());
        }
        self.topics()
            .ensure_system_topic(names::TRACE_TOPIC, crate::config::TRACE_TOPIC_QUEUES)
            .map(|_| ())
    }

    /// The rest of a deletion whose config is gone: consume state, index, then the mark.
    async fn drop_deleted_topic(&self, topic: &str) -> Result<(), ApogeeError> {
        self.consume().forget_topic(topic)?;
        let store = self.store().clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || store.purge_topic(&name))
            .await
            .map_err(|e| ApogeeError::internal_in(format!("purging topic {topic}"), e))?
            .map_err(|e| ApogeeError::internal_in(format!("purging topic {topic}"), e))?;
        self.topics().finish_delete(topic)
    }
}
