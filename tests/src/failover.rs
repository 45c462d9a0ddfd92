//! Helpers of the automatic-failover tests (controller mode): members with fast beats, the
//! controller's view of a group and of each NameServer's Raft node, the master the routes
//! name, and a sender that keeps what was acknowledged.
//!
//! The controller's view is asked of a NameServer's Admin service (ControllerStatus); the
//! cluster-wide helpers ask the first NameServer still running, so they keep working while
//! another one is killed.

use crate::rpc;
use crate::{wait_until, BrokerSpec, Cluster};
use apogee_proto::cluster::{
    ControllerGroupStatus, ControllerStatusRequest, ControllerStatusResponse, GetClusterInfoRequest,
};
use apogee_proto::time::{self, now_ms};
use apogee_proto::v2::{self, Code};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The longest one ControllerStatus call may take here (the NameServer's own linearizable
/// read gives up after 3 s and answers stale).
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one send may take before it counts as failed.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a sender of [`Load`] waits after a failed send before the next one (a failed
/// send can answer at once: without the pause a task would spin while the group switches).
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Member `id` of `group` in controller mode, with beats every 500 ms, slaves reconnecting
/// after 200 ms, 1 MiB segments and a drain of [`DRAIN_MS`] after a handover at SIGTERM;
/// named `<group>-<id>`.
pub fn member(group: &str, id: i64) -> BrokerSpec {
    BrokerSpec::controlled(group, id)
        .env("STORE__SEGMENT_BYTES", "1048576")
        .env("HEARTBEAT_INTERVAL_MS", "500")
        .env("REPLICATION__RECONNECT_MS", "200")
        .env("FAILOVER__DRAIN_MS", DRAIN_MS.to_string())
}

/// How long a [`member`] that handed its role over at SIGTERM keeps answering. The
/// default's 35 s outlasts the official clients' 30 s route refresh and would only slow the
/// tests; with this one a client that has not refreshed its route yet may still send to
/// the address when the member exits.
pub const DRAIN_MS: u64 = 4_000;

/// NameServer `ns`'s ControllerStatus: `here_only` answers from its own controller (its own
/// Raft figures and its applied state when it does not lead).
pub async fn controller_status(
    ns: &str,
    here_only: bool,
) -> Result<ControllerStatusResponse, String> {
    let mut admin = rpc::admin(ns);
    let call = admin.controller_status(rpc::signed(ControllerStatusRequest { here_only }));
    tokio::time::timeout(STATUS_TIMEOUT, call)
        .await
        .map_err(|_| format!("ControllerStatus of {ns} timed out"))?
        .map(|r| r.into_inner())
        .map_err(|s| format!("ControllerStatus of {ns}: {}", s.message()))
}

/// `group` as the controller's leader confirmed it, asked of NameServer `ns`; an error when
/// the answer is stale or does not know the group.
pub async fn controller_group_at(ns: &str, group: &str) -> Result<ControllerGroupStatus, String> {
    let answer = controller_status(ns, false).await?;
    if answer.stale {
        return Err(format!(
            "{ns} answered a stale state: {}",
            answer.stale_reason
        ));
    }
    answer
        .groups
        .into_iter()
        .find(|g| g.broker_name == group)
        .ok_or_else(|| format!("the controller does not know the group {group} yet"))
}

/// `group` as the controller's leader confirmed it, asked of the first running NameServer.
pub async fn controller_group(
    cluster: &Cluster,
    group: &str,
) -> Result<ControllerGroupStatus, String> {
    controller_group_at(cluster.admin_ns(), group).await
}

/// The process name (`<group>-<id>`, as [`BrokerSpec::controlled`] names it) of member `id`.
pub fn member_name(group: &str, id: u64) -> String {
    format!("{group}-{id}")
}

/// Waits (at most 60 s) until the controller has a master of `group` above epoch
/// `epoch_above` whose in-sync set holds both members of a group of two; returns (the
/// master's process name, the other's).
pub async fn wait_for_full_in_sync_set(
    cluster: &Cluster,
    group: &str,
    epoch_above: u64,
) -> (String, String) {
    let g = wait_until(
        Duration::from_secs(60),
        "a master with both members in sync",
        || async {
            let g = controller_group(cluster, group).await?;
            (g.master != 0 && g.master_epoch > epoch_above && g.in_sync.len() == 2)
                .then_some(g.clone())
                .ok_or(format!("{g:?}"))
        },
    )
    .await;
    let other = if g.master == 1 { 2 } else { 1 };
    (member_name(group, g.master), member_name(group, other))
}

/// A group of two under one controller: both members in the in-sync set and `topic` created.
pub struct StartedGroup {
    pub cluster: Cluster,
    /// The process names of the first master and of the other member.
    pub master: String,
    pub slave: String,
    /// The first master's epoch.
    pub first_epoch: u64,
}

/// Starts a controller (one NameServer) and members 1 and 2 of `group`, then
/// [`settle_group_of_two`].
pub async fn start_group_of_two(group: &str, topic: &str, queues: i32) -> StartedGroup {
    let cluster = Cluster::builder()
        .controller()
        .broker(member(group, 1))
        .broker(member(group, 2))
        .start()
        .await;
    settle_group_of_two(cluster, group, topic, queues).await
}

/// Waits until both members of `group` in the started `cluster` are in the in-sync set under
/// its first master, and creates `topic` with `queues` queues.
pub async fn settle_group_of_two(
    cluster: Cluster,
    group: &str,
    topic: &str,
    queues: i32,
) -> StartedGroup {
    let (master, slave) = wait_for_full_in_sync_set(&cluster, group, 0).await;
    let first_epoch = controller_group(&cluster, group)
        .await
        .unwrap()
        .master_epoch;
    cluster.create_topic(topic, queues).await;
    StartedGroup {
        cluster,
        master,
        slave,
        first_epoch,
    }
}

/// The endpoint the first running NameServer presents as `group`'s master (broker id 0).
pub async fn routed_master(cluster: &Cluster, group: &str) -> Option<String> {
    registered_members(cluster, group)
        .await?
        .into_iter()
        .find(|(id, _)| *id == 0)
        .map(|(_, endpoint)| endpoint)
}

/// The members of `group` registered with the first running NameServer (what the routes
/// are made of): broker id and endpoint each. `None` when the NameServer did not answer.
pub async fn registered_members(cluster: &Cluster, group: &str) -> Option<Vec<(i64, String)>> {
    let info = rpc::registry(cluster.admin_ns())
        .get_cluster_info(rpc::signed(GetClusterInfoRequest {}))
        .await
        .ok()?
        .into_inner();
    Some(
        info.groups
            .iter()
            .filter(|g| g.broker_name == group)
            .flat_map(|g| &g.members)
            .map(|m| (m.broker_id, m.endpoint.clone()))
            .collect(),
    )
}

/// Waits (at most 10 s) until the routes name `addr` as `group`'s master.
pub async fn wait_routed_master(cluster: &Cluster, group: &str, addr: &str) {
    wait_until(
        Duration::from_secs(10),
        "the route to name the new master",
        || async {
            let routed = routed_master(cluster, group).await;
            (routed.as_deref() == Some(addr))
                .then_some(())
                .ok_or(format!("routed master {routed:?}, expected {addr}"))
        },
    )
    .await;
}

/// Sends one message of `body` to queue `queue` of `topic` on the broker at `addr`; its id
/// when acknowledged, else the status code's name or the transport error.
pub async fn send_one(addr: &str, topic: &str, queue: i32, body: String) -> Result<String, String> {
    send_message(addr, rpc::message(topic, queue, body)).await
}

/// Sends `message` to the broker at `addr`; its id when acknowledged.
pub async fn send_message(addr: &str, message: v2::Message) -> Result<String, String> {
    let id = rpc::id_of(&message);
    let request = v2::SendMessageRequest {
        messages: vec![message],
    };
    let mut client = rpc::messaging(addr);
    let answer = tokio::time::timeout(SEND_TIMEOUT, client.send_message(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    let status = answer.get_ref().status.as_ref();
    let code = rpc::code(status);
    if code == Code::Ok as i32 {
        Ok(id)
    } else {
        Err(format!(
            "{}: {}",
            rpc::code_name(code),
            status.map_or("", |s| s.message.as_str())
        ))
    }
}

/// Receives (and acks) from `topic` for `group` on the broker at `addr` until the message
/// `id` comes (at most `timeout`); it, and when it was received (ms).
pub async fn receive_id(
    addr: &str,
    group: &str,
    topic: &str,
    id: &str,
    timeout: Duration,
) -> (v2::Message, i64) {
    let client = rpc::messaging(addr);
    wait_until(timeout, &format!("{id} from {topic}"), || {
        let mut client = client.clone();
        async move {
            let invisible = Some(time::duration(Duration::from_secs(60)));
            let req = rpc::receive_request(group, topic, 16, invisible, Duration::from_secs(1));
            let answer = client.receive_message(req).await;
            let (messages, status) = match answer {
                Ok(_) => rpc::receive_contents(answer).await,
                Err(e) => return Err(format!("receive: {e}")),
            };
            let at = now_ms();
            let entries: Vec<(String, String)> = messages
                .iter()
                .map(|m| (rpc::id_of(m), rpc::handle_of(m)))
                .collect();
            if !entries.is_empty() {
                let acked = rpc::ack(&mut client, group, topic, &entries).await;
                assert_eq!(
                    rpc::code(acked.status.as_ref()),
                    Code::Ok as i32,
                    "{acked:?}"
                );
            }
            let ids: Vec<&String> = entries.iter().map(|(id, _)| id).collect();
            match messages.into_iter().find(|m| rpc::id_of(m) == id) {
                Some(m) => Ok((m, at)),
                None => Err(format!("received {ids:?}; status {status:?}")),
            }
        }
    })
    .await
}

/// What a sender of [`Load`] does after a failed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// The task ends (a killed broker: nothing more will be acknowledged).
    Stop,
    /// The failure is counted and the task goes on after a short pause.
    Retry,
}

/// One acknowledged send: the message id and when the acknowledgement came.
#[derive(Clone, Debug)]
pub struct Acked {
    pub id: String,
    pub at: Instant,
}

/// Tasks sending one message at a time to one broker until stopped, each acknowledged id
/// kept with its time.
pub struct Load {
    acked: Arc<Mutex<Vec<Acked>>>,
    failures: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `tasks` senders to `addr` over the queues `0..queues` of `topic`; the bodies
    /// are `<label>-<task>-<n>`.
    pub fn start(
        addr: &str,
        topic: &str,
        queues: i32,
        tasks: usize,
        label: &str,
        on_failure: OnFailure,
    ) -> Load {
        let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|t| {
                let (addr, topic, label) = (addr.to_string(), topic.to_string(), label.to_string());
                let (acked, failures, stop) = (acked.clone(), failures.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let queue = (n % queues as usize) as i32;
                        match send_one(&addr, &topic, queue, format!("{label}-{t}-{n}")).await {
                            Ok(id) => acked.lock().unwrap().push(Acked {
                                id,
                                at: Instant::now(),
                            }),
                            Err(e) => {
                                failures.lock().unwrap().push(e);
                                if on_failure == OnFailure::Stop {
                                    return;
                                }
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                        }
                        n += 1;
                    }
                })
            })
            .collect();
        Load {
            acked,
            failures,
            stop,
            tasks,
        }
    }

    /// How many sends were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// How many sends were acknowledged after `t`.
    pub fn acked_after(&self, t: Instant) -> usize {
        self.acked
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a.at > t)
            .count()
    }

    /// The longest time without an acknowledgement between the first one and the last.
    pub fn longest_gap(&self) -> Duration {
        let mut times: Vec<Instant> = self.acked.lock().unwrap().iter().map(|a| a.at).collect();
        times.sort();
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    }

    /// How many sends failed so far.
    pub fn failure_count(&self) -> usize {
        self.failures.lock().unwrap().len()
    }

    /// Waits (at most `timeout`) until `n` sends were acknowledged after `t`.
    pub async fn wait_acked_after(&self, t: Instant, n: usize, timeout: Duration, what: &str) {
        wait_until(timeout, what, || async {
            let got = self.acked_after(t);
            (got >= n).then_some(()).ok_or_else(|| {
                let failures = self.failures.lock().unwrap();
                format!(
                    "{got} of {n} acknowledged; {} failed sends, the last: {:?}",
                    failures.len(),
                    failures.last()
                )
            })
        })
        .await;
    }

    /// Stops the senders, waits for them, and returns (every acknowledged id, every failure).
    pub async fn stop(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("a sender task panicked");
        }
        let acked = self
            .acked
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.id.clone())
            .collect();
        let failures = self.failures.lock().unwrap().clone();
        (acked, failures)
    }
}

/// Asserts every id of `acked` is in the commit log of `data_dir` (of `who`).
pub fn assert_all_logged(acked: &[String], data_dir: &std::path::Path, who: &str) {
    let logged = crate::commitlog::logged_ids(data_dir);
    let lost: Vec<_> = acked.iter().filter(|id| !logged.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are not on {who}, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}
