//! One remoting connection of the client ([`Link`]) and the set of them a producer keeps
//! ([`Links`], one per address).
//!
//! A request is encoded on the caller's task and handed to the connection's writer task,
//! which writes every frame waiting in one `write` (requests of many callers share a
//! syscall under load); the reader task decodes answers and completes each request by its
//! `opaque`. A request not answered within its timeout is forgotten (a late answer is
//! dropped). When the connection fails, every request waiting on it fails with a transport
//! error and the next request to that address dials again. A request the server sends to
//! the client (a check-back, a notice) is answered REQUEST_CODE_NOT_SUPPORTED: a producer
//! sending over remoting sends no half messages.

use crate::{ClientError, Result};
use apogee_proto::remoting::codes::response;
use apogee_proto::remoting::frame::{self, FrameLimits};
use apogee_proto::remoting::RemotingCommand;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Frames waiting for one connection's writer; a caller past it waits for room.
pub const WRITE_QUEUE_FRAMES: usize = 4096;
/// The most bytes the writer gathers into one write.
const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// The reader's buffer room for each read.
const READ_CHUNK: usize = 64 * 1024;

type Pending = Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>;

/// What the connection's tasks and its callers share.
struct Shared {
    addr: String,
    pending: Pending,
    closed: AtomicBool,
}

impl Shared {
    /// Marks the connection closed and fails every request waiting on it.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pending.lock().clear();
    }
}

/// One TCP connection speaking remoting frames.
pub struct Link {
    shared: Arc<Shared>,
    frames: mpsc::Sender<Bytes>,
    next_opaque: AtomicI32,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.shared.close();
    }
}

/// Removes a request from the pending table when its caller stops waiting.
struct Forget<'a> {
    pending: &'a Pending,
    opaque: i32,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.opaque);
    }
}

impl Link {
    /// Dials `addr` (`host:port`) within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration, limits: FrameLimits) -> Result<Link> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Transport(format!("connecting to {addr} timed out")))?
            .map_err(|e| ClientError::Transport(format!("connecting to {addr}: {e}")))?;
        // Small frames are the point of this transport: no Nagle delay.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
        });
        let (frames, queued) = mpsc::channel(WRITE_QUEUE_FRAMES);
        let writer = tokio::spawn(write_frames(shared.clone(), write, queued));
        let reader = tokio::spawn(read_frames(shared.clone(), read, frames.clone(), limits));
        Ok(Link {
            shared,
            frames,
            next_opaque: AtomicI32::new(1),
            tasks: [writer, reader],
        })
    }

    /// Whether the connection failed or was closed (the next request should dial again).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Sends `request` and waits at most `timeout` for its answer.
    pub async fn request(
        &self,
        mut request: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand> {
        let addr = &self.shared.addr;
        if self.is_closed() {
            return Err(closed(addr));
        }
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        request.opaque = opaque;
        let mut buf = BytesMut::new();
        frame::encode(&request, &mut buf)
            .map_err(|e| ClientError::Config(format!("a request not sent to {addr}: {e}")))?;
        let (answered, answer) = oneshot::channel();
        self.shared.pending.lock().insert(opaque, answered);
        let _forget = Forget {
            pending: &self.shared.pending,
            opaque,
        };
        // Closed between the check above and the insert: no one would answer.
        if self.is_closed() {
            return Err(closed(addr));
        }
        let exchange = async {
            self.frames
                .send(buf.freeze())
                .await
                .map_err(|_| closed(addr))?;
            answer.await.map_err(|_| closed(addr))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

fn closed(addr: &str) -> ClientError {
    ClientError::Transport(format!("the remoting connection to {addr} closed"))
}

/// Writes queued frames, as many as are waiting in one write, until the link is dropped or
/// a write fails.
async fn write_frames(
    shared: Arc<Shared>,
    mut io: OwnedWriteHalf,
    mut queued: mpsc::Receiver<Bytes>,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = queued.recv().await {
        let written = match queued.try_recv() {
            // One frame alone is written as it is, without a copy.
            Err(_) => io.write_all(&first).await,
            Ok(second) => {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&second);
                while batch.len() < WRITE_BATCH_BYTES {
                    match queued.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                io.write_all(&batch).await
            }
        };
        if let Err(e) = written {
            tracing::debug!(addr = %shared.addr, error = %e, "remoting write failed");
            break;
        }
    }
    shared.close();
}

/// Reads frames and completes the requests they answer, until the connection ends.
async fn read_frames(
    shared: Arc<Shared>,
    mut io: OwnedReadHalf,
    frames: mpsc::Sender<Bytes>,
    limits: FrameLimits,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let ended = loop {
        match frame::decode(&mut buf, &limits) {
            Ok(Some(command)) => {
                if command.is_response() {
                    let waiter = shared.pending.lock().remove(&command.opaque);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(command);
                    }
                } else if !command.is_oneway() {
                    refuse(&command, &frames);
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => break format!("a malformed frame: {e}"),
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match io.read_buf(&mut buf).await {
            Ok(0) => break "closed by the server".to_string(),
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    tracing::debug!(addr = %shared.addr, "remoting connection ended: {ended}");
    shared.close();
}

/// Answers a request of the server's that this client does not serve.
fn refuse(request: &RemotingCommand, frames: &mpsc::Sender<Bytes>) {
    let answer = RemotingCommand::error(
        request,
        response::REQUEST_CODE_NOT_SUPPORTED,
        format!("apogee-client does not serve request code {}", request.code),
    );
    let mut buf = BytesMut::new();
    if frame::encode(&answer, &mut buf).is_ok() {
        let _ = frames.try_send(buf.freeze());
    }
}

/// A producer's connections, one per address, dialled on first use and again after one
/// fails.
pub struct Links {
    links: Mutex<HashMap<String, Arc<Link>>>,
    connect_timeout: Duration,
    limits: FrameLimits,
}

impl Links {
    pub fn new(connect_timeout: Duration, limits: FrameLimits) -> Links {
        Links {
            links: Mutex::new(HashMap::new()),
            connect_timeout,
            limits,
        }
    }

    /// The open connection to `addr`, dialled when there is none.
    pub async fn get(&self, addr: &str) -> Result<Arc<Link>> {
        if let Some(link) = self.links.lock().get(addr).filter(|l| !l.is_closed()) {
            return Ok(link.clone());
        }
        let link = Arc::new(Link::connect(addr, self.connect_timeout, self.limits).await?);
        let mut links = self.links.lock();
        // Two callers may have dialled at once: the first one stored is kept.
        match links.get(addr).filter(|l| !l.is_closed()) {
            Some(first) => Ok(first.clone()),
            None => {
                links.insert(addr.to_string(), link.clone());
                Ok(link)
            }
        }
    }

    /// Closes every connection.
    pub fn close(&self) {
        self.links.lock().clear();
    }
}

#[cfg(test)]
#[path = "link_tests.rs"]
mod tests;
