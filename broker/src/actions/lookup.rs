//! Reading one stored message by where it is: what a remoting client names by an offset
//! message id (a send-back, a transaction's end, a view by id).

use crate::services::Broker;
use crate::store::StoredMessage;
use apogee_proto::ApogeeError;

impl Broker {
    /// The message whose record starts at `log_offset`; `None` when the offset is outside the
    /// log or is not the start of a record.
    pub fn message_at(&self, log_offset: u64) -> Result<Option<StoredMessage>, ApogeeError> {
        Ok(self.store().message_at(log_offset)?)
    }
}
