//! Java and Maven for the tests that run Java programs nobody here wrote (RocketMQ's
//! official clients in `official_java`, its `mqadmin` in `official_mqadmin`): whether they
//! can run here, and each Maven project of `tests/` built once per test binary.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Why Java programs cannot run here, or None when java and mvn can.
fn java_missing() -> Option<String> {
    for (tool, arg) in [("java", "-version"), ("mvn", "-v")] {
        match Command::new(tool).arg(arg).output() {
            Err(e) => return Some(format!("{tool} cannot be run ({e})")),
            Ok(out) if !out.status.success() => {
                return Some(format!("`{tool} {arg}` failed ({})", out.status))
            }
            Ok(_) => {}
        }
    }
    None
}

/// Whether Java programs can run here; prints why `what` is skipped when not (and fails
/// under CI, which must run it).
pub fn java_usable(what: &str) -> bool {
    apogee_tests::prerequisite::present(
        what,
        java_missing(),
        "install a JDK 17 and Maven; deploy/dev-setup.sh",
    )
}

/// Packages the Maven project `tests/PROJECT`, offline first (dependencies resolved by
/// `deploy/dev-setup.sh`), then online outside CI; returns its `target` directory.
fn package(project: &str) -> PathBuf {
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(project);
    let maven = |offline: bool| {
        let mut cmd = Command::new("mvn");
        cmd.args(["-q", "-B", "-f"]).arg(project.join("pom.xml"));
        if offline {
            cmd.arg("-o");
        }
        cmd.args(["package"]).output().expect("running mvn")
    };
    let mut out = maven(true);
    if !out.status.success() && std::env::var("CI").as_deref() != Ok("true") {
        out = maven(false);
    }
    assert!(
        out.status.success(),
        "{} did not build (deploy/dev-setup.sh resolves its dependencies): {}\n{}{}",
        project.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    project.join("target")
}

/// The `target` directory of the Maven project `tests/PROJECT`, packaged once into `built`
/// for every test that uses it.
pub async fn built(built: &'static OnceLock<PathBuf>, project: &'static str) -> PathBuf {
    tokio::task::spawn_blocking(move || built.get_or_init(|| package(project)).clone())
        .await
        .expect("the Maven build")
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
