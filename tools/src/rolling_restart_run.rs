//! `apogee cluster rolling-restart`: carrying the plan of [`crate::rolling_restart`] out.
//!
//! Every chosen group must pass [`refusal`] at the start, or nothing runs. Then, group after
//! group, member after member ([`next_member`] over the controller's state as it is then):
//! a master's turn begins with a planned switch (Admin.ElectMaster, as `apogee broker
//! elect`) and waits until the controller's confirmed state has the new master leading an
//! in-sync set that holds it and the NameServers route to it; then the restart command runs
//! (`sh -c`, its output on stderr); then the member must answer as a new process (another
//! start time in its GetBrokerStatus), replicate from its master (a slave), and the group's
//! committed in-sync set must hold every member again, steadily for [`STEADY`], before the
//! next member's turn. A failed command, a refusal met on the way, or a turn longer than
//! the member's timeout stops the run with an error naming the member; the turns done so
//! far are returned with it.

use crate::admin::{format_ago, Admin};
use crate::broker_status::{fetch_status, resolve_broker};
use crate::controller::ControllerGroupView;
use crate::error::{ToolError, ToolResult};
use crate::output::TableRow;
use crate::rolling_restart::{
    address_of, next_member, plan, refusal, Action, PlannedStep, RollingRestart,
};
use apogee_client::ClientConfig;
use serde::Serialize;
use std::future::Future;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How often the controller's state and the member are asked while waiting.
const POLL: Duration = Duration::from_millis(250);

/// How long a restarted member must stay in sync, connected, before the next turn (a
/// member counted in sync only because the controller had not yet noticed it gone would
/// drop out within this).
pub const STEADY: Duration = Duration::from_secs(1);

/// The longest one GetBrokerStatus of a member may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// One member's turn as it happened.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemberOutcome {
    /// The member and what its turn was (its role before the turn).
    #[serde(flatten)]
    pub step: PlannedStep,
    /// A master's turn: the member the switch made master, and how long until the
    /// controller and the routes named it (ms).
    pub new_master: Option<u64>,
    pub switch_ms: Option<u64>,
    /// How long the restart command ran (ms).
    pub restart_ms: u64,
    /// From the command's end until the member was back in the in-sync set (ms; it then
    /// stayed there for [`STEADY`] before the next turn).
    pub rejoin_ms: u64,
}

impl TableRow for MemberOutcome {
    fn headers() -> Vec<&'static str> {
        vec![
            "ORDER",
            "BROKER",
            "MEMBER",
            "ADDRESS",
            "ROLE",
            "NEW MASTER",
            "SWITCH",
            "RESTART",
            "REJOIN",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        vec![
            self.step.order.to_string(),
            self.step.group.clone(),
            self.step.member.to_string(),
            self.step.address.clone(),
            self.step.role.to_string(),
            or_dash(self.new_master.map(|m| m.to_string())),
            or_dash(self.switch_ms.map(|ms| format_ago(ms as i64))),
            format_ago(self.restart_ms as i64),
            format_ago(self.rejoin_ms as i64),
        ]
    }
}

/// `--dry-run`: the plan from the controller's confirmed state, refused as a run would be.
pub async fn dry_run(admin: &Admin, spec: &RollingRestart) -> ToolResult<Vec<PlannedStep>> {
    plan(&admin.controller_status().await?, &spec.groups).map_err(ToolError::Server)
}

/// Runs the rolling restart `spec` asks for, writing a progress line per event to
/// `progress`; returns the turns done, and the error that stopped the run (if any).
pub async fn run(
    admin: &Admin,
    config: &ClientConfig,
    spec: &RollingRestart,
    progress: &mut dyn Write,
) -> (Vec<MemberOutcome>, Option<ToolError>) {
    let mut done = Vec::new();
    let error = run_into(admin, config, spec, progress, &mut done)
        .await
        .err();
    (done, error)
}

async fn run_into(
    admin: &Admin,
    config: &ClientConfig,
    spec: &RollingRestart,
    progress: &mut dyn Write,
    done: &mut Vec<MemberOutcome>,
) -> ToolResult<()> {
    let status = admin.controller_status().await?;
    let planned = plan(&status, &spec.groups).map_err(ToolError::Server)?;
    let mut groups: Vec<String> = planned.iter().map(|step| step.group.clone()).collect();
    groups.dedup();
    say(
        progress,
        format!(
            "rolling restart of {} members in {}, one at a time",
            planned.len(),
            groups.join(", ")
        ),
    );
    for name in &groups {
        let mut restarted = Vec::new();
        loop {
            let group = confirmed_group(admin, name)
                .await
                .map_err(ToolError::Server)?;
            if let Some(why) = refusal(&group) {
                return Err(ToolError::Server(format!(
                    "stopped before the next member: {why}"
                )));
            }
            let Some((member, action)) = next_member(&group, &restarted) else {
                break;
            };
            restarted.push(member);
            let turn = Turn {
                admin,
                config,
                spec,
                step: PlannedStep {
                    order: done.len() + 1,
                    group: name.clone(),
                    member,
                    address: address_of(&group, member),
                    role: action.role(),
                    action,
                },
            };
            done.push(turn.run(progress).await?);
        }
        say(progress, format!("{name}: every member restarted"));
    }
    Ok(())
}

/// One member's turn.
struct Turn<'a> {
    admin: &'a Admin,
    config: &'a ClientConfig,
    spec: &'a RollingRestart,
    step: PlannedStep,
}

impl Turn<'_> {
    /// The member as the errors and progress lines name it.
    fn label(&self) -> String {
        format!(
            "{} member {} ({})",
            self.step.group, self.step.member, self.step.address
        )
    }

    /// An error of this turn: what went wrong, naming the member.
    fn failed(&self, what: impl std::fmt::Display) -> ToolError {
        ToolError::Server(format!(
            "rolling restart stopped at {}: {what}",
            self.label()
        ))
    }

    async fn run(&self, progress: &mut dyn Write) -> ToolResult<MemberOutcome> {
        let deadline = Instant::now() + self.spec.timeout_per_member;
        let role = self.step.role;
        say(
            progress,
            format!(
                "[{}] {}, {role}: {}",
                self.step.order,
                self.label(),
                self.step.action.describe()
            ),
        );
        let (new_master, switch_ms) = match self.step.action {
            Action::Restart => (None, None),
            Action::SwitchThenRestart => {
                let started = Instant::now();
                let (new_master, epoch) = self.switch(deadline).await?;
                let ms = started.elapsed().as_millis() as u64;
                say(
                    progress,
                    format!(
                        "    the master is member {new_master} (epoch {epoch}), routed, after {}",
                        format_ago(ms as i64)
                    ),
                );
                (Some(new_master), Some(ms))
            }
        };
        let before = fetch_status(&self.step.address, self.config, STATUS_TIMEOUT)
            .await
            .map_err(|e| {
                self.failed(format!(
                    "cannot ask it for its status before the restart (the CLI must reach \
                     every member): {}",
                    e.message
                ))
            })?
            .started_at_ms;
        let started = Instant::now();
        self.restart(deadline).await?;
        let restart_ms = started.elapsed().as_millis() as u64;
        let ended = Instant::now();
        let rejoined = self.wait_rejoined(before, deadline).await?;
        let rejoin_ms = rejoined.saturating_duration_since(ended).as_millis() as u64;
        say(
            progress,
            format!(
                "    restarted in {}, back in the in-sync set {} later (held {})",
                format_ago(restart_ms as i64),
                format_ago(rejoin_ms as i64),
                format_ago(STEADY.as_millis() as i64)
            ),
        );
        Ok(MemberOutcome {
            step: self.step.clone(),
            new_master,
            switch_ms,
            restart_ms,
            rejoin_ms,
        })
    }

    /// The planned switch away from this master; waits until the controller's confirmed
    /// state has the new master leading an in-sync set that holds it, and the NameServers
    /// route to it. Returns the new master and its epoch.
    async fn switch(&self, deadline: Instant) -> ToolResult<(u64, u64)> {
        let elected = self
            .admin
            .elect_master(&self.step.group, None)
            .await
            .map_err(|e| self.failed(format!("the planned switch failed: {e}")))?;
        let new = elected.master;
        wait_steady(deadline, Duration::ZERO, || async {
            let g = confirmed_group(self.admin, &self.step.group).await?;
            if g.master != Some(new) || !g.in_sync.contains(&new) {
                return Err(format!("the controller has {}", describe(&g)));
            }
            let routed = resolve_broker(self.admin, &self.step.group)
                .await
                .map_err(|e| e.to_string())?;
            let address = address_of(&g, new);
            (routed == address)
                .then_some(())
                .ok_or(format!("the routes name {routed} as master, not {address}"))
        })
        .await
        .map_err(|last| {
            self.failed(format!(
                "member {new}, elected, was not the routed master with the in-sync set \
                 within {}: {last}",
                seconds(self.spec.timeout_per_member)
            ))
        })?;
        Ok((new, elected.master_epoch))
    }

    /// Runs the restart command for this member, within the turn's deadline.
    async fn restart(&self, deadline: Instant) -> ToolResult<()> {
        let env = [
            ("APOGEE_GROUP", self.step.group.clone()),
            ("APOGEE_MEMBER", self.step.member.to_string()),
            ("APOGEE_ENDPOINT", self.step.address.clone()),
        ];
        run_restart_command(&self.spec.restart_command, &env, deadline)
            .await
            .map_err(|why| self.failed(why))
    }

    /// Waits until the member answers as a new process (its start time is not `before`),
    /// replicates from its master (unless it is the master), and the group's committed
    /// in-sync set holds every member, steadily for [`STEADY`]. Returns when that began.
    async fn wait_rejoined(&self, before: i64, deadline: Instant) -> ToolResult<Instant> {
        wait_steady(deadline, STEADY, || async {
            let status = fetch_status(&self.step.address, self.config, STATUS_TIMEOUT)
                .await
                .map_err(|e| e.message)?;
            if status.started_at_ms == before {
                return Err(
                    "it answers as the process that ran before the restart command \
                            (did the command restart it?)"
                        .to_string(),
                );
            }
            let g = confirmed_group(self.admin, &self.step.group).await?;
            if g.master != Some(self.step.member) && !status.master_connected {
                return Err(format!(
                    "it does not replicate from its master yet; the controller has {}",
                    describe(&g)
                ));
            }
            match refusal(&g) {
                None => Ok(()),
                Some(_) => Err(format!("the controller has {}", describe(&g))),
            }
        })
        .await
        .map_err(|last| {
            self.failed(format!(
                "not back in the in-sync set within {}: {last}",
                seconds(self.spec.timeout_per_member)
            ))
        })
        .map(|(_, since)| since)
    }
}

/// Runs `command` with `sh -c` and `env` (its output on stderr); what went wrong when it
/// cannot start, fails, or runs past `deadline` (it is killed then).
async fn run_restart_command(
    command: &str,
    env: &[(&str, String)],
    deadline: Instant,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the restart command with sh: {e}"))?;
    match tokio::time::timeout_at(deadline.into(), child.wait()).await {
        Err(_) => Err(
            "the restart command did not end within the member's timeout (it was \
                       stopped)"
                .into(),
        ),
        Ok(Err(e)) => Err(format!("waiting for the restart command: {e}")),
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the restart command failed ({status})")),
    }
}

/// `name` as the controller's leader confirmed it.
async fn confirmed_group(admin: &Admin, name: &str) -> Result<ControllerGroupView, String> {
    let status = admin.controller_status().await.map_err(|e| e.to_string())?;
    if status.stale {
        return Err(format!(
            "the controller's state is not confirmed by its leader ({})",
            status.stale_reason.unwrap_or_default()
        ));
    }
    status
        .groups
        .into_iter()
        .find(|g| g.broker == name)
        .ok_or_else(|| format!("the controller no longer holds the broker group {name}"))
}

/// A group's master and in-sync set, for the messages.
fn describe(g: &ControllerGroupView) -> String {
    let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let members: Vec<u64> = g.members.iter().map(|m| m.member_id).collect();
    format!(
        "master {} (epoch {}), in sync {{{}}} of members {{{}}}",
        g.master.map_or("none".into(), |m| m.to_string()),
        g.master_epoch,
        ids(&g.in_sync),
        ids(&members)
    )
}

/// Asks `check` every [`POLL`] until it passed for `steady` without a failure in between
/// (zero: once); its value and when that steady pass began, or the last failure when
/// `deadline` comes first.
async fn wait_steady<T, F, Fut>(
    deadline: Instant,
    steady: Duration,
    mut check: F,
) -> Result<(T, Instant), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let mut passing_since: Option<Instant> = None;
    loop {
        let last = match tokio::time::timeout_at(deadline.into(), check()).await {
            Ok(Ok(value)) => {
                let since = *passing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= steady {
                    return Ok((value, since));
                }
                format!(
                    "in sync for less than {}",
                    format_ago(steady.as_millis() as i64)
                )
            }
            Ok(Err(why)) => {
                passing_since = None;
                why
            }
            Err(_) => "no answer before the deadline".to_string(),
        };
        if Instant::now() + POLL >= deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Writes one progress line (a failed write to stderr is not the run's failure).
fn say(progress: &mut dyn Write, line: String) {
    let _ = writeln!(progress, "{line}");
    let _ = progress.flush();
}

#[cfg(test)]
#[path = "rolling_restart_run_tests.rs"]
mod tests;
