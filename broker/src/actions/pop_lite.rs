//! A pop on a LITE parent topic: takes from the client's ready lite queues
//! (`crate::consume::lite`), round-robin so one busy lite topic does not starve the others,
//! each through the consume engine as topic = the lite queue, queue 0 (one delivery in flight
//! per lite queue and group, in order). The long poll waits on the client's one wake-up
//! (appends to its lite queues, acks, its first sync) and on the next redelivery of one of
//! its lite queues coming due.

use super::pop_order::PopPlan;
use crate::consume::lite::LiteClient;
use crate::consume::long_poll::{Attempt, LongPoll, Polled};
use crate::consume::{Delivery, PopRequest};
use crate::services::Broker;
use apogee_proto::time::now_ms;
use apogee_proto::ApogeeError;
use std::time::Duration;

/// Most ready lite queues one look pops, per message the batch may take (a look that finds
/// the queues empty or held stops there).
const LOOKS_PER_MESSAGE: usize = 4;

type Found = Result<(Vec<Delivery>, i64), ApogeeError>;

/// Pops for a lite plan until `deadline`.
pub(super) async fn pop(
    broker: &Broker,
    plan: &PopPlan<'_>,
    deadline: tokio::time::Instant,
) -> Polled<Found, i64> {
    let order = plan.order;
    let client =
        broker
            .lite()
            .client_for_receive(order.client_id, order.group, order.topic, now_ms());
    // Registers nothing in the store: the client's own wake-up stands for its lite queues.
    let poll = LongPoll::new(
        deadline,
        broker.store().watch_queues(order.topic, &[]),
        broker.closing(),
    )
    .woken_by(client.notify());
    poll.run(|| {
        let now = now_ms();
        match pop_ready(broker, plan, &client, now) {
            Ok(d) if d.is_empty() => Attempt::Nothing {
                empty: now,
                look_again_in: client
                    .next_due_ms()
                    .map(|at| Duration::from_millis((at - now).max(1) as u64)),
            },
            popped => Attempt::Done(popped.map(|d| (d, now))),
        }
    })
    .await
}

/// One look: the client's ready lite queues in turn until the batch is full.
fn pop_ready(
    broker: &Broker,
    plan: &PopPlan<'_>,
    client: &LiteClient,
    now: i64,
) -> Result<Vec<Delivery>, ApogeeError> {
    let order = plan.order;
    let batch = order.batch as usize;
    let mut out = Vec::new();
    let mut looks = batch.saturating_mul(LOOKS_PER_MESSAGE);
    while out.len() < batch && looks > 0 {
        let Some(queue) = client.take_ready(now) else {
            break;
        };
        looks -= 1;
        let request = PopRequest {
            group: &plan.group,
            topic: &queue,
            queue_ids: &[0],
            filter: &order.filter,
            max: batch - out.len(),
            invisible_ms: plan.invisible_ms,
            renew_until_ms: plan.auto_renew_ms.map(|ms| now + ms),
            // A repeat is keyed by topic: a lite pop spans many; not remembered.
            attempt_id: None,
            client_id: order.client_id,
            start_after_ms: None,
        };
        let popped = broker.consume().pop(&request, now)?;
        // Its delivery in flight (this one or another client's) comes due then: its
        // subscribers look again.
        if let Some(at) =
            broker
                .consume()
                .lite_next_due(order.group, &queue, plan.group.max_delivery_attempts)
        {
            broker.lite().due_at(order.group, &queue, at);
        }
        out.extend(popped);
    }
    Ok(out)
}
