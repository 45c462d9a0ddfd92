//! Finding stored messages by what names them: a message id or a key (through the index's
//! lookup families, each hit checked against its record), or the offset where a record starts
//! in the commit log (a remoting client's offset message id: its header first, for its size).

use super::keys::{self, prefix_end};
use super::kv::Cf as C;
use super::record::{self, StoredMessage};
use super::{index, MessageStore, StoreError};

impl MessageStore {
    /// The message whose record starts at `log_offset`; `None` when the offset is outside the
    /// log or is not the start of a record.
    pub fn message_at(&self, log_offset: u64) -> Result<Option<StoredMessage>, StoreError> {
        let header = match self.read_log_bytes(log_offset, record::HEADER_LEN) {
            Ok(header) => header,
            Err(StoreError::OffsetOutOfRange { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(size) = record::check_header(&header, u64::MAX) else {
            return Ok(None);
        };
        match self.read_at(log_offset, size) {
            Ok(stored) => Ok(Some(stored)),
            Err(StoreError::OffsetOutOfRange { .. } | StoreError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads index hits, skipping ones whose log range is gone or whose record does not match.
    fn read_hits(
        &self,
        rows: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
        max: usize,
        matches: impl Fn(&StoredMessage) -> bool,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mut out = Vec::new();
        for (k, v) in rows {
            if out.len() >= max {
                break;
            }
            let (Some(off), Some(size)) = (keys::trailing_u64(&k), index::decode_size_value(&v))
            else {
                return Err(StoreError::Index(format!(
                    "malformed lookup entry {k:02x?}"
                )));
            };
            match self.read_at(off, size) {
                Ok(m) if matches(&m) => out.push(m),
                Ok(_) | Err(StoreError::OffsetOutOfRange { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The newest stored message with this id.
    pub fn lookup_by_id(&self, message_id: &str) -> Result<Option<StoredMessage>, StoreError> {
        let mut all = self.lookup_all_by_id(message_id, usize::MAX)?;
        Ok(all.pop())
    }

    /// Every stored message with this id (a resend or retry keeps the id), oldest first.
    pub fn lookup_all_by_id(
        &self,
        message_id: &str,
        max: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let p = keys::id_prefix(message_id);
        let rows = self
            .shared
            .kv
            .scan(C::MessageId, &p, &prefix_end(&p), 1024)?;
        let mut hits = self.read_hits(rows.into_iter().rev(), max, |m| {
            m.msg.message_id == message_id
        })?;
        hits.reverse();
        Ok(hits)
    }

    /// Up to `max` messages of `topic` carrying `key`, oldest first.
    pub fn lookup_by_key(
        &self,
        topic: &str,
        key: &str,
        max: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let p = keys::key_prefix(topic, key);
        let rows = self.shared.kv.scan(
            C::MessageKey,
            &p,
            &prefix_end(&p),
            max.saturating_mul(2).max(16),
        )?;
        self.read_hits(rows.into_iter(), max, |m| {
            m.msg.topic == topic && m.msg.keys.iter().any(|k| k == key)
        })
    }
}
