//! The README's five-minute tour, run as a new user runs it: README command 1 (a standalone
//! broker on its default ports, 9876, 10911, 5556 and 5557) and then every line of the tour's
//! code block, top to bottom, in bash, each of which must exit 0 (and the dead-letter steps
//! print what the tour says they do: [`TOUR_OUTPUTS`]). The block is read from
//! README.md at test time, so an edit that breaks the tour breaks this test.
//!
//! What differs from a person at a terminal: the `alias apogee=...` line is not run (the
//! built `apogee` binary is first on PATH instead), and a placeholder such as
//! `<message id>` is filled with a value the tour's earlier commands produced (the test asks
//! the CLI for it with `-o json`, as a person would copy it from the screen). A placeholder
//! the test does not know fails the test. The standalone's ports are fixed by the README:
//! when something else holds them the test says so and skips, and fails under CI.

use apogee_tests::process::{ManagedProcess, STANDALONE_PORTS};
use apogee_tests::{bins, cli, http, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The heading of the tour in README.md; its first `sh` block is the tour.
const TOUR_HEADING: &str = "## A five-minute tour";
/// The longest a tour line may run (the benchmarks run for 10 s each).
const LINE_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// The lines of the tour's code block.
fn tour_lines(readme: &str) -> Vec<String> {
    let after = readme
        .split_once(TOUR_HEADING)
        .unwrap_or_else(|| panic!("README.md has no {TOUR_HEADING:?}"))
        .1;
    let block = after
        .split_once("```sh\n")
        .expect("the tour has a ```sh block")
        .1;
    let block = block.split_once("\n```").expect("the tour's block ends").0;
    block.lines().map(str::to_string).collect()
}

/// Where the tour's commands write (data, completions, secrets) and run.
struct Tour {
    dir: tempfile::TempDir,
    path: String,
}

impl Tour {
    /// Runs one tour line in bash (with pipefail), returning its exit code and output.
    fn run(&self, line: &str) -> (Option<i32>, String) {
        let out = self.dir.path().join("line.out");
        let file = std::fs::File::create(&out).expect("line output file");
        let mut child = Command::new("bash")
            .args(["-o", "pipefail", "-c", line])
            .current_dir(self.dir.path().join("work"))
            .env("PATH", &self.path)
            .env("HOME", self.dir.path().join("home"))
            .env_remove("APOGEE_NAMESERVER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone"))
            .stderr(file)
            .spawn()
            .expect("starting bash");
        let deadline = Instant::now() + LINE_TIMEOUT;
        let code = loop {
            if let Some(status) = child.try_wait().expect("waiting for bash") {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (code, std::fs::read_to_string(&out).unwrap_or_default())
    }
}

/// What the tour's dead-letter steps must print (beyond exiting 0): the message the group
/// gave up on is not delivered a third time, it is listed among the dead letters right away,
/// and it is resent. (line prefix, text the output must contain, text it must not contain)
const TOUR_OUTPUTS: [(&str, &str, &str); 3] = [
    (
        "apogee consume --topic jobs --group workers --max 1 --wait 3s",
        "",
        "flaky",
    ),
    ("apogee dlq list --group workers", "job-1", ""),
    ("apogee dlq resend --group workers", "resent", ""),
];

/// Checks a tour line's output against [`TOUR_OUTPUTS`]; returns how many entries applied.
fn check_output(command: &str, output: &str) -> usize {
    let mut applied = 0;
    for (prefix, contains, lacks) in TOUR_OUTPUTS {
        if !command.starts_with(prefix) {
            continue;
        }
        applied += 1;
        assert!(
            output.contains(contains) && (lacks.is_empty() || !output.contains(lacks)),
            "tour line {command:?}: expected its output to contain {contains:?} and not \
             {lacks:?}:\n{output}"
        );
    }
    applied
}

/// The value for a placeholder of the tour, asked of the CLI as JSON.
fn fill(placeholder: &str) -> String {
    let json = |args: &[&str]| cli::run(args).success().json();
    let found = match placeholder {
        "<message id>" => {
            let found = json(&[
                "-o", "json", "message", "find", "--topic", "orders", "--key", "order-1",
            ]);
            first_string(&found, &["message_id", "id"])
        }
        "<transaction id>" => {
            let listed = json(&["-o", "json", "txn", "list", "--pending"]);
            first_string(&listed, &["transaction_id"])
        }
        other => panic!("the tour has a placeholder this test cannot fill: {other}"),
    };
    found.unwrap_or_else(|| panic!("no value for {placeholder} in the CLI's JSON"))
}

/// The first string under one of `keys`, searching `v` depth first.
fn first_string(v: &serde_json::Value, keys: &[&str]) -> Option<String> {
    match v {
        serde_json::Value::Object(map) => keys
            .iter()
            .find_map(|k| map.get(*k).and_then(|x| x.as_str()).map(str::to_string))
            .or_else(|| map.values().find_map(|x| first_string(x, keys))),
        serde_json::Value::Array(items) => items.iter().find_map(|x| first_string(x, keys)),
        _ => None,
    }
}

/// The byte range of the first placeholder in `text` at or after `from`: `<`, lowercase
/// words separated by spaces, `>` (a shell's `<(` or `< file` redirection is not one).
fn next_placeholder(text: &str, from: usize) -> Option<std::ops::Range<usize>> {
    let start = from + text[from..].find('<')?;
    let len = text[start + 1..].find('>');
    let inner = len.map(|n| &text[start + 1..start + 1 + n]);
    match inner {
        Some(words)
            if words.starts_with(|c: char| c.is_ascii_lowercase())
                && !words.ends_with(' ')
                && words.chars().all(|c| c.is_ascii_lowercase() || c == ' ') =>
        {
            Some(start..start + words.len() + 2)
        }
        _ => next_placeholder(text, start + 1),
    }
}

/// `line` with each `<...>` placeholder (outside its trailing comment) filled in.
fn with_placeholders_filled(line: &str) -> String {
    let (command, comment) = match line.find(" #") {
        Some(i) => line.split_at(i),
        None => (line, ""),
    };
    let mut command = command.to_string();
    let mut from = 0;
    while let Some(range) = next_placeholder(&command, from) {
        let value = fill(&command[range.clone()]);
        from = range.start + value.len();
        command.replace_range(range, &value);
    }
    format!("{command}{comment}")
}

#[test]
fn placeholders_are_told_from_redirections() {
    let line = "source <(apogee x) < in && apogee get <message id> <b> # <c>";
    let found = |from| next_placeholder(line, from).map(|r| (&line[r.clone()], r.end));
    let (first, end) = found(0).expect("a placeholder");
    assert_eq!(first, "<message id>");
    let (second, end) = found(end).expect("a second");
    assert_eq!(second, "<b>");
    assert_eq!(found(end).map(|f| f.0), Some("<c>"));
    assert_eq!(next_placeholder("a <(b) < c > d", 0), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_runs_as_written_on_a_fresh_standalone() {
    let taken: Vec<u16> = STANDALONE_PORTS
        .into_iter()
        .filter(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    if !taken.is_empty() {
        let reason = format!("the standalone's ports {taken:?} are in use");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "under CI the README tour must run: {reason}"
        );
        eprintln!("SKIPPED readme_tour_runs_as_written_on_a_fresh_standalone: {reason}");
        return;
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let lines = tour_lines(&readme);
    let tour = Tour {
        dir: tempfile::tempdir().expect("temp dir"),
        path: format!(
            "{}:{}",
            bins::bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    };
    for sub in ["work", "home"] {
        std::fs::create_dir_all(tour.dir.path().join(sub)).expect("tour dirs");
    }
    let mut broker = ManagedProcess::spawn(
        "standalone",
        bins::bin(bins::BROKER),
        vec![
            "--standalone".into(),
            "--data-dir".into(),
            tour.dir
                .path()
                .join("work/apogee-data")
                .display()
                .to_string(),
        ],
        // The README's defaults, except that the machine's disk (full of build output on
        // CI) never refuses the tour's sends or deletes its segments.
        vec![
            ("APOGEE_BROKER_STORE__DISK_CLEAN_RATIO".into(), "1.0".into()),
            (
                "APOGEE_BROKER_STORE__DISK_REFUSE_RATIO".into(),
                "1.0".into(),
            ),
        ],
        tour.dir.path().join("standalone.log"),
    );
    broker.wait_for_port(
        "127.0.0.1:5557".parse().expect("an address"),
        Duration::from_secs(60),
    );
    wait_until(
        Duration::from_secs(60),
        "the standalone to be ready",
        || async {
            match http::get("127.0.0.1:5557", "/readyz").await {
                (200, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;

    let mut ran = 0;
    let mut checked = 0;
    for (number, line) in lines.iter().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("alias apogee=") {
            continue;
        }
        let command = tokio::task::block_in_place(|| with_placeholders_filled(trimmed));
        let (code, output) = tokio::task::block_in_place(|| tour.run(&command));
        broker.assert_running();
        assert_eq!(
            code,
            Some(0),
            "tour line {} failed: {command}\n--- its output ---\n{output}",
            number + 1
        );
        checked += check_output(&command, &output);
        ran += 1;
    }
    assert_eq!(
        checked,
        TOUR_OUTPUTS.len(),
        "the tour's dead-letter lines changed: update TOUR_OUTPUTS"
    );
    assert!(
        ran >= 30,
        "only {ran} tour lines ran: is the block cut short?"
    );
}
