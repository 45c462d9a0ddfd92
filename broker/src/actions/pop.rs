//! The pop action: a consumer group takes messages to process, each invisible to the group's
//! other consumers until it is acked or its invisible time passes (gRPC ReceiveMessage,
//! remoting POP_MESSAGE).

use super::pop_order::{PopOrder, PopPlan, QueueChoice};
use crate::config::AutoCreateStart;
use crate::consume::long_poll::{Attempt, LongPoll, Polled};
use crate::consume::{Delivery, PopRequest};
use crate::services::Broker;
use apogee_proto::time::now_ms;
use apogee_proto::{limits, ApogeeError};
use std::time::Duration;

/// What a pop took: empty when nothing came within the wait.
#[derive(Debug)]
pub struct Popped {
    pub deliveries: Vec<Delivery>,
    /// When the deliveries were handed out (the last look, when there are none).
    pub at_ms: i64,
    /// How long they stay invisible.
    pub invisible_ms: i64,
    /// Set when this pop created the group: where it starts.
    pub created_group: Option<AutoCreateStart>,
}

impl Broker {
    /// Pops for `order`: its checks, then looks until messages are found or the wait ends
    /// (`consume::long_poll`), woken by appends to its queues, acks and nacks, and a
    /// redelivery coming due. An error is the request's; an empty [`Popped`] is a wait that
    /// ended with nothing.
    pub async fn pop(&self, order: &PopOrder<'_>) -> Result<Popped, ApogeeError> {
        let (plan, created_group, lite) = self.plan_pop(order)?;
        let _place = self.quotas().long_poll()?;
        let deadline = tokio::time::Instant::now()
            + order
                .wait
                .min(Duration::from_millis(limits::MAX_LONG_POLLING_MS as u64));
        let polled = if lite {
            super::pop_lite::pop(self, &plan, deadline).await
        } else {
            self.pop_queues(&plan, deadline).await?
        };
        let (deliveries, at_ms) = match polled {
            Polled::Done(found) => found?,
            Polled::DeadlinePassed(at_ms) => (Vec::new(), at_ms),
        };
        let bytes = deliveries.iter().map(|d| d.message.msg.body.len()).sum();
        self.metrics()
            .delivered(order.topic, order.group, deliveries.len(), bytes);
        Ok(Popped {
            deliveries,
            at_ms,
            invisible_ms: plan.invisible_ms,
            created_group,
        })
    }

    /// The order's checks, in the order a client sees their errors; the group last, so a
    /// request refused for another reason creates none.
    fn plan_pop<'a>(
        &self,
        order: &'a PopOrder<'a>,
    ) -> Result<(PopPlan<'a>, Option<AutoCreateStart>, bool), ApogeeError> {
        limits::validate_group(order.group)?;
        let topic = self.readable_topic(order.topic)?;
        if !(1..=limits::MAX_RECEIVE_BATCH as i64).contains(&order.batch) {
            return Err(ApogeeError::BadRequest(format!(
                "batch size {} is outside 1..={}",
                order.batch,
                limits::MAX_RECEIVE_BATCH
            )));
        }
        let consume = &self.config().consume;
        let auto_renew_ms = order.auto_renew.then_some(consume.max_auto_renew_ms as i64);
        let invisible_ms = match (order.invisible_ms, auto_renew_ms) {
            (Some(ms), _) => ms,
            (None, Some(_)) => consume.auto_renew_period_ms as i64,
            (None, None) => {
                return Err(ApogeeError::IllegalInvisibleTime(
                    "an invisible time is required unless the broker renews it".into(),
                ))
            }
        };
        if !(limits::MIN_INVISIBLE_MS..=limits::MAX_INVISIBLE_MS).contains(&invisible_ms) {
            return Err(ApogeeError::IllegalInvisibleTime(format!(
                "invisible time {invisible_ms} ms is outside {}..={} ms",
                limits::MIN_INVISIBLE_MS,
                limits::MAX_INVISIBLE_MS
            )));
        }
        let count = topic.queues;
        let queues: Vec<u32> = match order.queues {
            QueueChoice::Only(id) => {
                vec![crate::consume::offsets::queue_of_topic(&topic, id)?]
            }
            QueueChoice::StartingAt(id) => {
                let first = u32::try_from(id).ok().filter(|&q| q < count).unwrap_or(0);
                (0..count).map(|i| (first + i) % count).collect()
            }
            QueueChoice::Turning if count == 0 => Vec::new(),
            QueueChoice::Turning => {
                let first = (now_ms().max(0) as u64 % count as u64) as u32;
                (0..count).map(|i| (first + i) % count).collect()
            }
        };
        // A pop on a LITE parent needs (or creates) a lite group bound to it.
        let lite = topic.is_lite_parent();
        if lite {
            self.lite_group(order.group, order.topic, order.client_id)?;
        }
        let receiving = self.groups().resolve_for_receive(
            order.group,
            order.topic,
            order.client_id,
            now_ms(),
        )?;
        // A PRIORITY topic is served from its highest priority queue down (`consume::priority`).
        let queues = match order.queues {
            QueueChoice::Only(_) => queues,
            _ => crate::consume::priority::receive_order(
                &topic,
                &receiving.config,
                self.config().priority.order,
                queues,
            ),
        };
        let plan = PopPlan {
            order,
            group: receiving.config,
            start_after_ms: receiving.start_after_ms,
            queues,
            invisible_ms,
            auto_renew_ms,
        };
        Ok((plan, receiving.created, lite))
    }

    /// Pops the plan's queues until `deadline`. A restarted master first takes back what a
    /// slave served while it was away (MESSAGE_NOT_FOUND when that does not come in time).
    async fn pop_queues(
        &self,
        plan: &PopPlan<'_>,
        deadline: tokio::time::Instant,
    ) -> Result<Polled<Result<(Vec<Delivery>, i64), ApogeeError>, i64>, ApogeeError> {
        let replication = self.replication();
        if replication.handback_pending() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !replication.wait_handback(left).await {
                return Err(ApogeeError::MessageNotFound(
                    "this master is waiting for its slave's consume state after a restart".into(),
                ));
            }
        }
        let order = plan.order;
        // The watch is made before the first look, so an append to a queue of the plan in
        // between wakes the poll; acks and nacks wake it too (one may free a FIFO group).
        let poll = LongPoll::new(
            deadline,
            self.store().watch_queues(order.topic, &plan.queues),
            self.closing(),
        )
        .woken_by(self.consume().changed());
        let polled = poll
            .run(|| {
                let now = now_ms();
                let request = PopRequest {
                    group: &plan.group,
                    topic: order.topic,
                    queue_ids: &plan.queues,
                    filter: &order.filter,
                    max: order.batch as usize,
                    invisible_ms: plan.invisible_ms,
                    renew_until_ms: plan.auto_renew_ms.map(|ms| now + ms),
                    attempt_id: order.attempt_id,
                    client_id: order.client_id,
                    start_after_ms: plan.start_after_ms,
                };
                match self.consume().pop(&request, now) {
                    Ok(d) if d.is_empty() => Attempt::Nothing {
                        empty: now,
                        // Look again when a redelivery comes due.
                        look_again_in: self
                            .consume()
                            .next_redelivery_ms(&plan.group, order.topic)
                            .map(|at| Duration::from_millis((at - now).max(1) as u64)),
                    },
                    popped => Attempt::Done(popped.map(|d| (d, now))),
                }
            })
            .await;
        Ok(polled)
    }
}
