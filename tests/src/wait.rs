//! The one polling helper every test uses: check a condition until it holds or a deadline
//! passes, then fail with what was last seen.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often [`wait_until`] checks.
const POLL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some(value)` (returned) or `timeout` passes (panics with
/// `what` and the last observation `check` described through `Err`).
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last seen: {last}"
                );
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
