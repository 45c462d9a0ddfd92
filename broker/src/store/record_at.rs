//! Reading one record by where it starts in the commit log, when only its offset is known
//! (a remoting client's offset message id): its header first, for its size.

use super::record::{self, StoredMessage};
use super::{MessageStore, StoreError};

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
}
