//! The parts of a rolling restart's run that need no server: the restart command (its
//! environment, a failure, a command running past the deadline) and the steady wait.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("APOGEE_GROUP", "broker-a".to_string()),
        ("APOGEE_MEMBER", "2".to_string()),
        ("APOGEE_ENDPOINT", "127.0.0.1:10912".to_string()),
    ]
}

#[tokio::test]
async fn the_command_sees_the_member_in_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seen");
    let command = format!(
        "echo \"$APOGEE_GROUP $APOGEE_MEMBER $APOGEE_ENDPOINT\" > '{}'",
        file.display()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    run_restart_command(&command, &env(), deadline)
        .await
        .unwrap();
    let seen = std::fs::read_to_string(&file).unwrap();
    assert_eq!(seen.trim(), "broker-a 2 127.0.0.1:10912");
}

#[tokio::test]
async fn a_failing_or_hanging_command_is_an_error() {
    let deadline = Instant::now() + Duration::from_secs(10);
    let e = run_restart_command("exit 3", &env(), deadline)
        .await
        .unwrap_err();
    assert!(
        e.contains("the restart command failed") && e.contains('3'),
        "{e}"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_millis(300);
    let e = run_restart_command("sleep 30", &env(), deadline)
        .await
        .unwrap_err();
    assert!(e.contains("did not end within"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "not stopped at the deadline"
    );
}

#[tokio::test]
async fn the_wait_needs_a_steady_pass_and_reports_the_last_failure() {
    // Passes, fails once, then passes for good: the failure restarts the steady period.
    let calls = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    let (n, since) = wait_steady(deadline, Duration::from_millis(400), || async {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        if n == 1 {
            Err("dropped out".to_string())
        } else {
            Ok(n)
        }
    })
    .await
    .unwrap();
    assert!(
        n >= 4,
        "returned at call {n}: the pass after the failure was not held"
    );
    assert!(started.elapsed() >= Duration::from_millis(400 + POLL.as_millis() as u64));
    assert!(
        since >= started + POLL * 2 && since.elapsed() >= Duration::from_millis(400),
        "the steady pass began at the third call"
    );

    let deadline = Instant::now() + Duration::from_millis(600);
    let e = wait_steady(deadline, Duration::ZERO, || async {
        Err::<(), _>("still out".to_string())
    })
    .await
    .unwrap_err();
    assert_eq!(e, "still out");
}
