//! The one way a NameServer calls several brokers at once. A fan-out sends the same call to a
//! chosen set of broker groups' masters ([`Target`]s; [`every_master`] is the usual set) over
//! the server's cached [`BrokerChannels`], each call bounded by the channels' call timeout, all
//! at once. Its result, a [`FanOut`], says per broker what happened; it turns into either the
//! answers (a query: any failure fails the whole, so a partial answer is never taken for the
//! whole) or the groups that applied a change and the error naming the rest. Either way a
//! failure reads the same:
//!
//! `<what> failed on <broker>: <its error> (at <endpoint>); ...; applied on <broker>, ...`
//!
//! ("applied on" only for a change some group did apply). Its status code is the code every
//! failure shares, UNAVAILABLE when they differ.

use super::brokers::{bounded, BrokerChannels};
use crate::registry::{GroupKey, Registry};
use apogee_proto::auth::cluster_calls::SignedChannel;
use apogee_proto::cluster::admin_client::AdminClient;
use std::future::Future;
use std::time::Duration;
use tonic::{Code, Status};

/// A broker group's master a call goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub group: GroupKey,
    pub endpoint: String,
}

impl Target {
    pub fn new(group: GroupKey, endpoint: impl Into<String>) -> Self {
        Target {
            group,
            endpoint: endpoint.into(),
        }
    }
}

/// Every broker group's live master (groups without one are left out).
pub fn every_master(registry: &Registry) -> Vec<Target> {
    registry
        .admin_targets("")
        .into_iter()
        .filter_map(|t| Some(Target::new(t.group, t.master_endpoint?)))
        .collect()
}

/// What each broker of a fan-out answered, and what was asked (for the error text).
#[derive(Debug)]
pub struct FanOut<T> {
    what: String,
    /// Per broker called: the target and its answer or error, in the order of the targets.
    pub outcomes: Vec<(Target, Result<T, Status>)>,
}

impl<T> FanOut<T> {
    /// The outcome of asking `what` (e.g. "CreateTopic of topic t") of some brokers.
    pub fn new(what: impl Into<String>, outcomes: Vec<(Target, Result<T, Status>)>) -> Self {
        FanOut {
            what: what.into(),
            outcomes,
        }
    }

    /// Whether no broker was called.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Leaves out the brokers that failed with `code` (e.g. NOT_FOUND from a group that does
    /// not hold what was asked): they neither answered nor failed.
    pub fn tolerating(mut self, code: Code) -> Self {
        self.outcomes
            .retain(|(_, r)| r.as_ref().err().is_none_or(|e| e.code() != code));
        self
    }

    /// Every broker's answer (by broker group), or one error naming each broker that failed.
    pub fn answers(self) -> Result<Vec<(GroupKey, T)>, Status> {
        let (answered, error) = self.split(false);
        match error {
            Some(e) => Err(e),
            None => Ok(answered),
        }
    }

    /// A change's result: the groups that applied it with their answers (by broker group; the
    /// caller records them even when others failed), and the error naming each broker that
    /// failed and where it was applied, if any failed.
    pub fn applied(self) -> (Vec<(GroupKey, T)>, Option<Status>) {
        let what = self.what.clone();
        let (applied, error) = self.split(true);
        if error.is_none() {
            tracing::info!(brokers = %broker_names(&applied).join(","), "{what} applied");
        }
        (applied, error)
    }

    fn split(self, change: bool) -> (Vec<(GroupKey, T)>, Option<Status>) {
        let mut answered = Vec::new();
        let mut failed = Vec::new();
        for (target, outcome) in self.outcomes {
            match outcome {
                Ok(answer) => answered.push((target.group, answer)),
                Err(e) => failed.push((target, e)),
            }
        }
        answered.sort_by(|a, b| a.0.cmp(&b.0));
        let applied_on = if change {
            broker_names(&answered)
        } else {
            Vec::new()
        };
        let error = failure(&self.what, &failed, &applied_on);
        (answered, error)
    }
}

/// The one error text of a fan-out with failures (none without).
fn failure(what: &str, failed: &[(Target, Status)], applied_on: &[String]) -> Option<Status> {
    let first = failed.first()?;
    let code = if failed.iter().all(|(_, e)| e.code() == first.1.code()) {
        first.1.code()
    } else {
        Code::Unavailable
    };
    let each: Vec<String> = failed
        .iter()
        .map(|(t, e)| {
            format!(
                "{}: {} (at {})",
                t.group.broker_name,
                e.message(),
                t.endpoint
            )
        })
        .collect();
    let mut message = format!("{what} failed on {}", each.join("; "));
    if !applied_on.is_empty() {
        message.push_str(&format!("; applied on {}", applied_on.join(", ")));
    }
    tracing::warn!("{message}");
    Some(Status::new(code, message))
}

/// The broker names of some groups' answers, sorted, each once.
pub fn broker_names<T>(answers: &[(GroupKey, T)]) -> Vec<String> {
    let mut names: Vec<String> = answers.iter().map(|(k, _)| k.broker_name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Asks `what` of every target's Admin service at once over `channels`, each call bounded by
/// the channels' call timeout.
pub async fn fan_out<T, F, Fut>(
    channels: &BrokerChannels,
    targets: Vec<Target>,
    what: impl Into<String>,
    call: F,
) -> FanOut<T>
where
    F: Fn(AdminClient<SignedChannel>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>>,
{
    let call = &call;
    let outcomes = call_each(targets, channels.call_timeout(), |target| {
        let client = channels.admin(&target.endpoint);
        async move {
            let answer = call(client?).await?;
            Ok(answer.into_inner())
        }
    })
    .await;
    FanOut::new(what, outcomes)
}

/// Runs `call` for every target at once, each bounded by `timeout` (past it, that target's
/// outcome is DEADLINE_EXCEEDED); returns each target with its outcome, in target order.
pub async fn call_each<T, F, Fut>(
    targets: Vec<Target>,
    timeout: Duration,
    call: F,
) -> Vec<(Target, Result<T, Status>)>
where
    F: Fn(&Target) -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let call = &call;
    let calls = targets.into_iter().map(|target| async move {
        let answer = bounded(&target.endpoint, timeout, call(&target)).await;
        (target, answer)
    });
    futures::future::join_all(calls).await
}

#[cfg(test)]
#[path = "fan_out_tests.rs"]
mod tests;
