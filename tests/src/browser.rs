//! The web console's browser tests' harness: a headless Chromium driven through WebDriver.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port and opens a session (through
//! the `fantoccini` crate) of Chromium in headless mode with a fresh profile, pointed at one
//! console (`http://<ops listener>/console/...`). Its helpers go to a console path, fill a form's
//! field by name, click by CSS selector, wait for a selector or a text (one [`wait_until`] poll),
//! read text and take screenshots.
//!
//! Where Chromium or chromedriver is missing (`deploy/dev-setup.sh` installs Debian's
//! `chromium` and `chromium-driver`), [`Browser::start`] prints SKIPPED and the reason and
//! returns None, except under CI (`CI=true`), where it fails.
//!
//! When a test fails (the browser is dropped while the test panics) it saves a screenshot to
//! `<cargo target dir>/console-screenshots/<test>.png` and prints its path, the page's URL and
//! the page's HTML. With `APOGEE_CONSOLE_SCREENSHOTS=<dir>` (relative to the workspace root)
//! [`Browser::page_screenshot`] saves the screenshots of the console's main pages there (the
//! pictures of docs/CONSOLE.md: `APOGEE_CONSOLE_SCREENSHOTS=docs/console`). The session is
//! closed and chromedriver and the browser are killed on drop.
//!
//! The tests must run on a multi-threaded runtime: the WebDriver session is a task of the
//! test's runtime, which the drop's last calls need running.

use crate::process::free_port;
use crate::wait_until;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, TimeoutConfiguration};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Debian's Chromium (package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Debian's chromedriver (package `chromium-driver`), looked up on `PATH`.
pub const CHROMEDRIVER: &str = "chromedriver";
/// The environment variable naming the directory the main pages' screenshots go to.
pub const SCREENSHOTS_ENV: &str = "APOGEE_CONSOLE_SCREENSHOTS";

/// How long a selector or text may take to appear (a debug build's first page, a broker call).
const WAIT: Duration = Duration::from_secs(20);
/// How long chromedriver may take to listen and Chromium to open a session.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the drop's last WebDriver calls (failure screenshot, closing the session) may take.
const DROP_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest part of a page's HTML printed on failure.
const MAX_PRINTED_HTML: usize = 32 * 1024;

/// Chromium's command line: headless, no sandbox (containers, root), nothing fetched or synced
/// in the background; `--user-data-dir` and the binary are added per session.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// Why the browser tests cannot run here, or None when they can.
pub fn browser_missing() -> Option<String> {
    if !Path::new(CHROMIUM).is_file() {
        return Some(format!(
            "{CHROMIUM} is not installed (Debian package chromium)"
        ));
    }
    match Command::new(CHROMEDRIVER).arg("--version").output() {
        Err(e) => Some(format!(
            "{CHROMEDRIVER} cannot be run ({e}; Debian package chromium-driver)"
        )),
        Ok(out) if !out.status.success() => Some(format!(
            "{CHROMEDRIVER} --version failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// Whether the browser tests can run here: false after printing SKIPPED and why when Chromium
/// or chromedriver is missing; under CI (`CI=true`) that fails instead. (Tests call it before
/// starting their servers.)
pub fn available() -> bool {
    crate::prerequisite::present(
        "the console's browser tests",
        browser_missing(),
        "deploy/dev-setup.sh installs it",
    )
}

/// A headless Chromium session on one console, with chromedriver and the profile it owns.
pub struct Browser {
    client: Client,
    /// `http://<console's listener>`; console paths are appended.
    origin: String,
    /// The test's name: the failure screenshot's file name.
    test: String,
    driver: Child,
    driver_log: PathBuf,
    /// Chromium's user data dir and chromedriver's log, deleted on drop (after the kill).
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for `test`, on the console served at
    /// `console_addr` (host:port of the ops listener). None, after printing SKIPPED and why,
    /// when Chromium or chromedriver is missing; under CI that fails instead.
    pub async fn start(test: &str, console_addr: &str) -> Option<Browser> {
        if !available() {
            return None;
        }
        let profile = tempfile::Builder::new()
            .prefix("apogee-browser-")
            .tempdir()
            .expect("creating the browser's profile dir");
        let port = free_port();
        let driver_log = profile.path().join("chromedriver.log");
        let driver = spawn_driver(port, &driver_log);
        let mut browser_dir = profile.path().join("chromium");
        std::fs::create_dir_all(&browser_dir).expect("creating Chromium's user data dir");
        browser_dir = browser_dir
            .canonicalize()
            .expect("the user data dir's path");
        // From here on a failure kills chromedriver through the guard's drop.
        let mut guard = DriverGuard(Some(driver));
        let webdriver = format!("http://127.0.0.1:{port}");
        wait_until(START_TIMEOUT, "chromedriver to listen", || async {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .map(drop)
                .map_err(|e| format!("{e}; chromedriver's log:\n{}", read_log(&driver_log)))
        })
        .await;
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", browser_dir.display()));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            START_TIMEOUT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&webdriver),
        )
        .await
        .unwrap_or_else(|_| panic!("no WebDriver session within {START_TIMEOUT:?}"))
        .unwrap_or_else(|e| {
            panic!(
                "opening a Chromium session: {e}; chromedriver's log:\n{}",
                read_log(&driver_log)
            )
        });
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(WAIT),
                Some(WAIT),
                Some(Duration::ZERO),
            ))
            .await
            .expect("setting the session's timeouts");
        Some(Browser {
            client,
            origin: format!("http://{console_addr}"),
            test: test.to_string(),
            driver: guard.0.take().expect("the driver is guarded"),
            driver_log,
            _profile: profile,
        })
    }

    /// The WebDriver session, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens the console path `path` (`/console/topics`, with its query).
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.origin);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The current page's path and query (`/console/topics/orders`).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits until the page's path and query is `path`.
    pub async fn wait_for_path(&self, path: &str) {
        wait_until(WAIT, &format!("the page {path}"), || async {
            let now = self.path().await;
            if now == path {
                Ok(())
            } else {
                Err(now)
            }
        })
        .await;
    }

    /// The first element matching `css`, waiting until there is one.
    pub async fn wait_for(&self, css: &str) -> Element {
        wait_until(WAIT, &format!("an element {css}"), || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => Ok(element),
                Err(e) => Err(format!("{e} on {}", self.path().await)),
            }
        })
        .await
    }

    /// Waits until the text of the first element matching `css` contains `text`; returns the
    /// element's text.
    pub async fn wait_for_text(&self, css: &str, text: &str) -> String {
        wait_until(WAIT, &format!("{text:?} in {css}"), || async {
            let seen = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.map_err(|e| e.to_string())?,
                Err(e) => return Err(format!("{e} on {}", self.path().await)),
            };
            if seen.contains(text) {
                Ok(seen)
            } else {
                Err(seen)
            }
        })
        .await
    }

    /// Opens `path` again and again until the trimmed text of the first element matching `css`
    /// is `want` (a number the server computes, changing after the page was first shown).
    pub async fn wait_for_text_on(&self, path: &str, css: &str, want: &str) {
        wait_until(WAIT, &format!("{want:?} in {css} on {path}"), || async {
            self.goto(path).await;
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => {
                    let seen = element.text().await.map_err(|e| e.to_string())?;
                    if seen.trim() == want {
                        Ok(())
                    } else {
                        Err(seen)
                    }
                }
                Err(e) => Err(format!("{e} on {}", self.path().await)),
            }
        })
        .await;
    }

    /// The text of the first element matching `css` (waiting until there is one).
    pub async fn text(&self, css: &str) -> String {
        let element = self.wait_for(css).await;
        element
            .text()
            .await
            .unwrap_or_else(|e| panic!("the text of {css}: {e}"))
    }

    /// Every element matching `css` now (none: empty).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("finding {css}: {e}"))
    }

    /// Sets the field named `name` of the form matching `form` (a CSS selector, `#login`) to
    /// `value`: typed into an input or text area, chosen by value in a select.
    pub async fn fill(&self, form: &str, name: &str, value: &str) {
        let css = format!("{form} [name=\"{name}\"]");
        let field = self.wait_for(&css).await;
        let tag = field.tag_name().await.expect("the field's tag name");
        let set = if tag.eq_ignore_ascii_case("select") {
            field.select_by_value(value).await
        } else {
            match field.clear().await {
                Ok(()) => field.send_keys(value).await,
                Err(e) => Err(e),
            }
        };
        set.unwrap_or_else(|e| panic!("setting {css} to {value:?}: {e}"));
    }

    /// Clicks the first element matching `css` (waiting until there is one); a click that
    /// submits a form returns once the next page has loaded.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Saves a PNG screenshot of the window to `file`, making its directory.
    pub async fn screenshot(&self, file: &Path) {
        let png = self.client.screenshot().await.expect("taking a screenshot");
        save(file, &png).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    }

    /// With [`SCREENSHOTS_ENV`] set, saves a screenshot of the page as `<dir>/<name>.png`
    /// (a main page, for the docs); else nothing.
    pub async fn page_screenshot(&self, name: &str) {
        if let Some(dir) = screenshots_dir() {
            self.screenshot(&dir.join(format!("{name}.png"))).await;
        }
    }

    /// What a failing test prints: the page's screenshot (saved), URL and HTML.
    async fn failure_report(&self) -> String {
        let file = target_dir()
            .join("console-screenshots")
            .join(format!("{}.png", self.test));
        let screenshot = match self.client.screenshot().await {
            Ok(png) => match save(&file, &png) {
                Ok(()) => format!("screenshot: {}", file.display()),
                Err(e) => format!("no screenshot: writing {}: {e}", file.display()),
            },
            Err(e) => format!("no screenshot: {e}"),
        };
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let html = match self.client.source().await {
            Ok(html) => tail(&html, MAX_PRINTED_HTML).to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        format!(
            "{screenshot}\nURL: {url}\nthe page's HTML:\n{html}\nchromedriver's log: {}",
            self.driver_log.display()
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let report = run_aside(self.failure_report());
            eprintln!(
                "----- browser of {} at the failure -----\n{}",
                self.test,
                report.unwrap_or_else(|| "the browser did not answer".into())
            );
        }
        // Closing the session quits Chromium; killing chromedriver's process group catches
        // a browser that did not quit.
        run_aside(self.client.clone().close());
        kill_group(&mut self.driver);
    }
}

/// Kills chromedriver if [`Browser::start`] fails before the browser owns it.
struct DriverGuard(Option<Child>);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            kill_group(child);
        }
    }
}

/// Starts `chromedriver --port=<port>` in a process group of its own (the browsers it starts
/// join it), logging to `log`, killed with the test process.
fn spawn_driver(port: u16, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("creating chromedriver's log");
    let err = out.try_clone().expect("cloning the log's handle");
    let mut command = Command::new(CHROMEDRIVER);
    command
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    #[cfg(target_os = "linux")]
    unsafe {
        use std::os::unix::process::CommandExt;
        // Only async-signal-safe work here: one prctl.
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"))
}

/// SIGKILLs `child`'s process group (chromedriver and the browsers it started) and reaps it.
fn kill_group(child: &mut Child) {
    #[cfg(unix)]
    // SAFETY: a plain signal to the group led by our own child (its pid is the group's id).
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `call` (WebDriver calls of the test's session) to its end from a drop: on a thread of
/// its own with its own small runtime, for at most [`DROP_CALL_TIMEOUT`]. None when it did not
/// finish in time.
fn run_aside<F>(call: F) -> Option<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?
                    // The timer is made inside the runtime: it needs the runtime's clock.
                    .block_on(async { tokio::time::timeout(DROP_CALL_TIMEOUT, call).await })
                    .ok()
            })
            .join()
            .ok()
            .flatten()
    })
}

/// Where the main pages' screenshots go ([`SCREENSHOTS_ENV`], relative to the workspace root),
/// or None when it is not set.
pub fn screenshots_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(SCREENSHOTS_ENV).filter(|d| !d.is_empty())?);
    Some(if dir.is_absolute() {
        dir
    } else {
        // Tests run in their package's directory (tests/); the workspace root is its parent.
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests package lies in the workspace")
            .join(dir)
    })
}

/// The cargo target dir the test executable was built in (`<target>/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("locating the test executable");
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .expect("the test executable lies in <target>/<profile>/deps")
}

/// Writes `png` to `file`, making its directory.
fn save(file: &Path, png: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(file, png)
}

fn read_log(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_else(|e| format!("unreadable ({e})"))
}

/// The last `max` bytes of `text` (at a character boundary).
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
