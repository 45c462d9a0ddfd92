//! CONSUMER_SEND_MSG_BACK: a remoting push consumer's listener failed a message, and the
//! consumer hands it back to be consumed again later ([`Broker::send_back`], whose module
//! says where the copy goes).
//!
//! Arguments: `offset` (the message's commit-log offset, from its offset message id),
//! `group`, `delayLevel`, `originMsgId`, `originTopic`, `maxReconsumeTimes`. Without
//! `maxReconsumeTimes` (clients before 3.4.9), the group's own limit applies.

use super::args::{self, BadArgument};
use super::offsets::authorize_sub;
pub use crate::actions::retry::SendBack;
use crate::services::Broker;
use apogee_proto::remoting::RemotingCommand;

impl SendBack {
    /// Reads the request's extension fields.
    pub fn read(request: &RemotingCommand) -> Result<SendBack, BadArgument> {
        let log_offset: i64 = args::required(request, "offset")?;
        let log_offset = u64::try_from(log_offset)
            .map_err(|_| BadArgument(format!("the field offset = {log_offset} is negative")))?;
        Ok(SendBack {
            log_offset,
            group: args::string(request, "group")?.to_string(),
            delay_level: args::optional(request, "delayLevel")?.unwrap_or(0),
            origin_message_id: args::optional::<String>(request, "originMsgId")?
                .filter(|id| !id.is_empty()),
            max_reconsume_times: args::optional::<i64>(request, "maxReconsumeTimes")?
                .map(|n| n.clamp(0, u32::MAX as i64) as u32),
        })
    }
}

/// CONSUMER_SEND_MSG_BACK.
pub async fn consumer_send_back(
    broker: &Broker,
    caller: &apogee_server::remoting::Caller,
    request: &RemotingCommand,
) -> RemotingCommand {
    let back = match SendBack::read(request) {
        Ok(b) => b,
        Err(e) => return e.answer(request),
    };
    let authorize = |topic: &str| authorize_sub(caller, Some(&back.group), topic);
    match broker.send_back(&back, authorize).await {
        Ok(_) => RemotingCommand::success(request),
        Err(e) => RemotingCommand::refusal(request, &e),
    }
}

#[cfg(test)]
#[path = "send_back_tests.rs"]
mod tests;
