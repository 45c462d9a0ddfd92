//! `Registry.BrokerSession` on the NameServer: a broker's liveness stream. The first
//! message names the member and its beat interval; every later one is a beat (the data
//! version only). Each is answered "register required" when the table does not know the
//! member from this process or knows another data version. The member bound to the
//! session (`registry::sessions`) is dropped, with a WARN naming it and why, when the
//! stream ends or errors (the broker's connection closed, as a killed process's is), or
//! when `broker_missed_heartbeats` announced intervals pass without a beat (a hung
//! process, a cut link); the stream is then ended with DEADLINE_EXCEEDED. A session
//! replaced by a newer one of the same member ends with ABORTED and drops nothing.
//!
//! Every answer carries the `seq` of the beat it answers. Controller mode (the opening's
//! `controller_mode`, with a controller, embedded or remote): the broker id is the member's
//! id for life and must be 1 or more; every beat carrying a member report (the opening one
//! too) is passed to the controller ([`apogee_controller::FailoverAuthority::on_beat`], the
//! group being the broker name), and the answer carries the assignment when the leader
//! answers (an embedded controller that does not lead answers none). The
//! session's end tells the controller the member is gone from here (unless a newer session
//! of the member replaced it).
//!
//! Beats are answered in order, one at a time, and the controller's part is bounded by
//! [`CONTROLLER_ANSWER_TIMEOUT`] (or the beat interval when shorter): a slow Raft write
//! answers that beat without an assignment (the broker keeps its lease until it runs out)
//! and never stalls the session. The silence limit counts from the end of each beat's
//! handling, so time spent waiting for the controller is not counted as the broker's
//! silence (the beats sent meanwhile wait in the stream); a controller call still running
//! at the next beat is not doubled: that beat is answered without one.

use crate::metrics::LivenessCounters;
use crate::registry::{BeatAnswer, Expired, GroupKey, Registry, SessionMember};
use apogee_controller::failover::{MemberBeat, NameServerId, SessionEnd};
use apogee_controller::SharedAuthority;
use apogee_proto::cluster::{Assignment, SessionAnswer, SessionBeat, SessionOpen};
use apogee_proto::limits::{MAX_HEARTBEAT_INTERVAL_MS, MIN_HEARTBEAT_INTERVAL_MS};
use apogee_server::endpoint;
use prost::Message as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// The answers of one session, as the RPC returns them.
pub type SessionStream = ReceiverStream<Result<SessionAnswer, Status>>;

/// Longest wait for a session's opening message.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers not yet read by the broker; a broker that reads none misses its beats anyway.
const ANSWER_BUFFER: usize = 8;

/// The longest a beat's answer waits for the controller (the beat interval when shorter).
pub const CONTROLLER_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// What a session needs of the NameServer.
#[derive(Clone)]
pub struct SessionHost {
    pub registry: Arc<Registry>,
    pub counters: LivenessCounters,
    /// Turns true when the NameServer shuts down: every session ends.
    pub closing: watch::Receiver<bool>,
    /// The controller, embedded (`controller.enabled`) or remote (`controller.endpoints`),
    /// for sessions in controller mode.
    pub controller: Option<SharedAuthority>,
    /// This NameServer, as the controller tells a member's sessions apart.
    pub via: NameServerId,
}

/// One open session.
struct Session {
    group: GroupKey,
    broker_id: i64,
    endpoint: String,
    id: u64,
    interval: Duration,
    /// The opening said controller mode and a controller is embedded: beats go to it.
    controller_mode: bool,
}

/// Why a session's loop ended.
enum Ending {
    /// The stream ended or failed: the broker's side is gone.
    Closed(String),
    /// No beat within the allowed silence.
    MissedBeats(Duration),
    /// Replaced by a newer session of the member, or its member was dropped.
    Replaced,
    /// A later message tried to open the session again.
    Reopened,
    ShuttingDown,
}

/// Reads and checks the opening message, opens the session and starts serving it.
pub async fn open(
    host: SessionHost,
    mut inbound: Streaming<SessionBeat>,
) -> Result<SessionStream, Status> {
    let first = tokio::time::timeout(OPEN_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "no opening message within {} s",
                OPEN_TIMEOUT.as_secs()
            ))
        })??
        .ok_or_else(|| Status::invalid_argument("the session ended before its opening message"))?;
    host.counters.beats.inc();
    host.counters.beat_bytes.inc_by(first.encoded_len() as u64);
    let open = validate_open(&first)?;
    let interval_ms = open.heartbeat_interval_ms;
    let group = GroupKey::new(&open.cluster_name, &open.broker_name);
    let interval = Duration::from_millis(interval_ms);
    let who = SessionMember {
        group: &group,
        broker_id: open.broker_id,
        endpoint: &open.endpoint,
        instance: open.instance_id,
        interval,
    };
    let opened = host
        .registry
        .open_session(who, first.data_version)
        .inspect_err(|e| {
            tracing::warn!(broker = %group, broker_id = open.broker_id, endpoint = %open.endpoint,
                "session refused: {e}")
        })?;
    let session = Session {
        group: group.clone(),
        broker_id: open.broker_id,
        endpoint: open.endpoint.clone(),
        id: opened.id,
        interval,
        controller_mode: open.controller_mode && host.controller.is_some(),
    };
    tracing::debug!(broker = %group, broker_id = session.broker_id, session = session.id,
        interval_ms, "broker session opened");
    let (answers, rx) = mpsc::channel(ANSWER_BUFFER);
    let first_answer = SessionAnswer {
        register_required: opened.register_required,
        seq: first.seq,
        ..SessionAnswer::default()
    };
    tokio::spawn(serve(
        host,
        session,
        (first, first_answer),
        inbound,
        answers,
    ));
    Ok(ReceiverStream::new(rx))
}

/// Checks a session's opening message: it names a well-formed member (as a registration
/// does), its process (a non-zero `instance_id`) and an interval within the limits.
fn validate_open(first: &SessionBeat) -> Result<&SessionOpen, Status> {
    let open = first.open.as_ref().ok_or_else(|| {
        Status::invalid_argument("the first message of a broker session must carry `open`")
    })?;
    validate_identity(&open.cluster_name, &open.broker_name, open.broker_id)?;
    if open.controller_mode && open.broker_id < 1 {
        return Err(Status::invalid_argument(format!(
            "broker_id {}: in controller mode the broker id is the member's id for life and \
             must be 1 or more",
            open.broker_id
        )));
    }
    endpoint::parse(&open.endpoint).map_err(Status::invalid_argument)?;
    if open.instance_id == 0 {
        return Err(Status::invalid_argument(
            "instance_id must be the non-zero number the broker registers with",
        ));
    }
    let interval_ms = open.heartbeat_interval_ms;
    if !(MIN_HEARTBEAT_INTERVAL_MS..=MAX_HEARTBEAT_INTERVAL_MS).contains(&interval_ms) {
        return Err(Status::invalid_argument(format!(
            "heartbeat_interval_ms {interval_ms} must be within \
             {MIN_HEARTBEAT_INTERVAL_MS}..={MAX_HEARTBEAT_INTERVAL_MS}"
        )));
    }
    Ok(open)
}

/// Answers the opening and then every beat until the session ends, then drops its member
/// as the ending says.
async fn serve(
    mut host: SessionHost,
    session: Session,
    (first, mut first_answer): (SessionBeat, SessionAnswer),
    mut inbound: Streaming<SessionBeat>,
    answers: mpsc::Sender<Result<SessionAnswer, Status>>,
) {
    let limit = host.registry.session_silence_limit(session.interval);
    // The controller this session's beats go to (controller mode only).
    let controller = host.controller.clone().filter(|_| session.controller_mode);
    let mut controller_call = None;
    first_answer.assignment = assignment(
        controller.as_ref(),
        host.via,
        &session,
        &first,
        &mut controller_call,
    )
    .await;
    // The buffer is new: the first answer always fits.
    let _ = answers.try_send(Ok(first_answer));
    let ending = loop {
        let deadline = Instant::now() + limit;
        let next = tokio::select! {
            _ = host.closing.wait_for(|c| *c) => break Ending::ShuttingDown,
            _ = answers.closed() => break Ending::Closed("the broker stopped reading its answers".into()),
            next = tokio::time::timeout_at(deadline, inbound.message()) => next,
        };
        let beat = match next {
            Err(_) => break Ending::MissedBeats(limit),
            Ok(Ok(Some(beat))) => beat,
            Ok(Ok(None)) => break Ending::Closed("its session stream ended".into()),
            Ok(Err(status)) => {
                break Ending::Closed(format!("its session stream failed: {}", status.message()))
            }
        };
        host.counters.beats.inc();
        host.counters.beat_bytes.inc_by(beat.encoded_len() as u64);
        if beat.open.is_some() {
            break Ending::Reopened;
        }
        let answer = host.registry.beat(
            &session.group,
            session.broker_id,
            session.id,
            beat.data_version,
        );
        let BeatAnswer::Live { register_required } = answer else {
            break Ending::Replaced;
        };
        let assignment = assignment(
            controller.as_ref(),
            host.via,
            &session,
            &beat,
            &mut controller_call,
        )
        .await;
        let answer = SessionAnswer {
            register_required,
            assignment,
            seq: beat.seq,
        };
        // A full buffer is a broker not reading: it is asked again at its next beat.
        if let Err(mpsc::error::TrySendError::Closed(_)) = answers.try_send(Ok(answer)) {
            break Ending::Closed("the broker stopped reading its answers".into());
        }
    };
    // A replaced session's member beats on a newer session: it is not gone.
    let replaced = matches!(ending, Ending::Replaced);
    // Told in a task of its own: a remote controller's answer never holds up the ending.
    if let Some(controller) = controller.filter(|_| !replaced) {
        let (group, member) = (session.group.broker_name.clone(), session.broker_id as u64);
        // Only the broker's side closing the stream says anything of its process.
        let end = match ending {
            Ending::Closed(_) => SessionEnd::ClosedByMember,
            _ => SessionEnd::Lost,
        };
        let via = host.via;
        tokio::spawn(async move { controller.member_gone(&group, member, via, end).await });
    }
    finish(&host, &session, ending, &answers);
}

/// A controller call of a session, still running after its beat was answered.
type ControllerCall = tokio::task::JoinHandle<Option<Assignment>>;

/// The controller's assignment answering `beat` (controller mode, a beat with a member
/// report, a leading controller answering within the bound; else none). The call runs in a
/// task of its own, so one that overruns the bound still completes its writes; while it
/// runs, later beats of the session are answered without asking again.
async fn assignment(
    controller: Option<&SharedAuthority>,
    via: NameServerId,
    session: &Session,
    beat: &SessionBeat,
    running: &mut Option<ControllerCall>,
) -> Option<Assignment> {
    let controller = controller?;
    let report = beat.member.clone()?;
    if running.as_ref().is_some_and(|call| !call.is_finished()) {
        tracing::debug!(broker = %session.group, broker_id = session.broker_id,
            "the controller is still busy with an earlier beat: answered without an assignment");
        return None;
    }
    let member_beat = MemberBeat {
        group: session.group.broker_name.clone(),
        member: session.broker_id as u64,
        address: session.endpoint.clone(),
        report,
        via,
    };
    let controller = controller.clone();
    let call = running.insert(tokio::spawn(async move {
        controller.on_beat(member_beat).await
    }));
    let bound = CONTROLLER_ANSWER_TIMEOUT.min(session.interval);
    match tokio::time::timeout(bound, call).await {
        Ok(Ok(assignment)) => {
            *running = None;
            assignment
        }
        Ok(Err(e)) => {
            *running = None;
            tracing::warn!(broker = %session.group, broker_id = session.broker_id,
                "the controller's answer to a beat failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(broker = %session.group, broker_id = session.broker_id,
                bound_ms = bound.as_millis() as u64,
                "the controller did not answer a beat in time: answered without an assignment");
            None
        }
    }
}

/// Drops the member when the ending says so (logging it) and ends the stream.
fn finish(
    host: &SessionHost,
    session: &Session,
    ending: Ending,
    answers: &mpsc::Sender<Result<SessionAnswer, Status>>,
) {
    let (reason, why, status) = match ending {
        Ending::ShuttingDown => {
            let _ = answers.try_send(Err(Status::unavailable("the nameserver is shutting down")));
            return;
        }
        Ending::Replaced => {
            let _ = answers.try_send(Err(Status::aborted(
                "this session was replaced by a newer one of the same broker, or the broker \
                 was dropped; open a new session",
            )));
            return;
        }
        Ending::Closed(why) => ("session_closed", why, None),
        Ending::MissedBeats(limit) => (
            "missed_beats",
            format!(
                "no beat for {} ms ({} intervals of {} ms)",
                limit.as_millis(),
                host.registry.missed_heartbeats(),
                session.interval.as_millis()
            ),
            Some(Status::deadline_exceeded(format!(
                "no beat within {} ms: dropped from the routes; open a new session and \
                 register again",
                limit.as_millis()
            ))),
        ),
        Ending::Reopened => (
            "session_closed",
            "it sent a second opening message".into(),
            Some(Status::invalid_argument(
                "only the first message of a session carries `open`",
            )),
        ),
    };
    let dropped = host
        .registry
        .end_session(&session.group, session.broker_id, session.id);
    if let Some(dropped) = &dropped {
        host.counters.dropped.with_label_values(&[reason]).inc();
        log_dropped(dropped, &why);
    } else {
        tracing::debug!(broker = %session.group, broker_id = session.broker_id,
            endpoint = %session.endpoint, session = session.id, "broker session ended: {why}");
    }
    if let Some(status) = status {
        let _ = answers.try_send(Err(status));
    }
}

/// The WARN of a member dropped from the routes.
pub(crate) fn log_dropped(e: &Expired, why: &str) {
    tracing::warn!(
        cluster = %e.group.cluster,
        broker_name = %e.group.broker_name,
        broker_id = e.broker_id,
        endpoint = %e.endpoint,
        silent_ms = e.silent_for.as_millis() as u64,
        "broker {} id {} at {} dropped from routes: {why}",
        e.group,
        e.broker_id,
        e.endpoint
    );
}

/// Checks a broker's cluster name, broker name and id.
pub(crate) fn validate_identity(
    cluster: &str,
    broker_name: &str,
    broker_id: i64,
) -> Result<(), Status> {
    let name_ok = |s: &str| {
        !s.is_empty() && s.len() <= 255 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if !name_ok(cluster) {
        return Err(Status::invalid_argument(format!(
            "cluster_name {cluster:?} must be non-empty, without spaces"
        )));
    }
    if !name_ok(broker_name) {
        return Err(Status::invalid_argument(format!(
            "broker_name {broker_name:?} must be non-empty, without spaces"
        )));
    }
    if broker_id < 0 {
        return Err(Status::invalid_argument(format!(
            "broker_id {broker_id} must be 0 (master) or more (slave)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opening() -> SessionBeat {
        SessionBeat {
            open: Some(SessionOpen {
                cluster_name: "c".into(),
                broker_name: "b".into(),
                broker_id: 0,
                endpoint: "127.0.0.1:10911".into(),
                instance_id: 7,
                heartbeat_interval_ms: 1000,
                ..SessionOpen::default()
            }),
            data_version: 1,
            ..SessionBeat::default()
        }
    }

    #[test]
    fn an_opening_message_is_checked_field_by_field() {
        assert!(validate_open(&opening()).is_ok());
        let bounds = [MIN_HEARTBEAT_INTERVAL_MS, MAX_HEARTBEAT_INTERVAL_MS];
        for ms in bounds {
            let mut b = opening();
            b.open.as_mut().unwrap().heartbeat_interval_ms = ms;
            assert!(validate_open(&b).is_ok(), "{ms} ms");
        }
        /// A change to a valid opening, and what the refusal must name.
        type Case = (fn(&mut SessionBeat), &'static str);
        let cases: [Case; 9] = [
            (|b| b.open = None, "must carry `open`"),
            (
                |b| b.open.as_mut().unwrap().cluster_name.clear(),
                "cluster_name",
            ),
            (
                |b| b.open.as_mut().unwrap().broker_name = "a b".into(),
                "broker_name",
            ),
            (|b| b.open.as_mut().unwrap().broker_id = -1, "broker_id"),
            (
                |b| b.open.as_mut().unwrap().controller_mode = true,
                "in controller mode the broker id is the member's id for life and must be 1",
            ),
            (
                |b| b.open.as_mut().unwrap().endpoint = "nowhere".into(),
                "nowhere",
            ),
            (|b| b.open.as_mut().unwrap().instance_id = 0, "instance_id"),
            (
                |b| b.open.as_mut().unwrap().heartbeat_interval_ms = MIN_HEARTBEAT_INTERVAL_MS - 1,
                "heartbeat_interval_ms 9 ",
            ),
            (
                |b| b.open.as_mut().unwrap().heartbeat_interval_ms = MAX_HEARTBEAT_INTERVAL_MS + 1,
                "heartbeat_interval_ms 60001 ",
            ),
        ];
        for (i, (mutate, named)) in cases.iter().enumerate() {
            let mut b = opening();
            mutate(&mut b);
            let err = validate_open(&b).unwrap_err();
            assert_eq!(
                err.code(),
                tonic::Code::InvalidArgument,
                "case {i}: {err:?}"
            );
            assert!(err.message().contains(named), "case {i}: {}", err.message());
        }
    }
}
