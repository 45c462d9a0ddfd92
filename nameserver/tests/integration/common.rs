//! What the NameServer's integration tests share: serving a NameServer in the test's process.

use apogee_nameserver::{serve, NameServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A NameServer served in this process: its address, the sender that stops it, its task.
pub type Running = (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>);

/// Serves a NameServer with `config` on `listener` until the returned sender fires.
pub fn serve_on(listener: TcpListener, config: NameServerConfig) -> Running {
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(config, listener.into(), None, None, async {
            let _ = stopped.await;
        })
        .await
        .expect("the nameserver runs");
    });
    (address, stop, task)
}
