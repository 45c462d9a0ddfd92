//! What a test needs from the machine (a browser, a client's toolchain, free ports, root):
//! one rule for every such test. Where it is missing the test prints `SKIPPED` with the
//! reason and how to get it, and does nothing else; under CI (`CI=true`), where every test
//! must run, a missing prerequisite fails the test instead.

/// Whether a test may run: true when `missing` is None; otherwise prints why it is skipped
/// (what `needs` names, the reason, then `remedy`) and returns false, or panics under CI.
pub fn present(needs: &str, missing: Option<String>, remedy: &str) -> bool {
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI must run {needs}: {why}"
    );
    println!("SKIPPED: {needs}: {why} ({remedy})");
    false
}
