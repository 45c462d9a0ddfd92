//! A restart command for `apogee cluster rolling-restart` that a test serves: the command
//! the CLI runs once per member publishes `<member> <group> <endpoint>` as a request file in
//! a scratch directory and waits for an answer file; the test takes the request, restarts
//! that member with its own harness (which owns the processes) and answers.

use std::path::{Path, PathBuf};

/// The scratch directory the restart command and the test meet in.
pub struct RestartRequests {
    dir: PathBuf,
}

/// One member the CLI asked to restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartRequest {
    pub member: u64,
    pub group: String,
    pub endpoint: String,
}

impl RestartRequests {
    /// Requests met in `dir` (created).
    pub fn new(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).expect("creating the restart requests' directory");
        RestartRequests { dir }
    }

    /// The `--restart-command`: publishes the request whole (by a rename), waits for the
    /// answer and removes it.
    pub fn command(&self) -> String {
        let d = self.dir.display();
        format!(
            "echo \"$APOGEE_MEMBER $APOGEE_GROUP $APOGEE_ENDPOINT\" > '{d}/request.tmp' && \
             mv '{d}/request.tmp' '{d}/request' && \
             while [ ! -e '{d}/answer' ]; do sleep 0.05; done; rm '{d}/answer'"
        )
    }

    /// The pending request, taken (its file removed); `None` when there is none.
    pub fn take(&self) -> Option<RestartRequest> {
        let path = self.dir.join("request");
        let text = std::fs::read_to_string(&path).ok()?;
        std::fs::remove_file(&path).expect("removing the request");
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields.as_slice() {
            [member, group, endpoint] => Some(RestartRequest {
                member: member.parse().expect("a member id"),
                group: group.to_string(),
                endpoint: endpoint.to_string(),
            }),
            _ => panic!("a malformed request: {text:?}"),
        }
    }

    /// Tells the waiting command its member was restarted.
    pub fn answer(&self) {
        std::fs::write(self.dir.join("answer"), "done").expect("writing the answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[tokio::test]
    async fn the_command_publishes_its_member_and_ends_on_the_answer() {
        let scratch = tempfile::tempdir().unwrap();
        let requests = RestartRequests::new(scratch.path().join("r"));
        assert_eq!(requests.take(), None);
        let mut child = Command::new("sh")
            .args(["-c", &requests.command()])
            .env("APOGEE_MEMBER", "2")
            .env("APOGEE_GROUP", "g")
            .env("APOGEE_ENDPOINT", "198.18.0.1:10911")
            .spawn()
            .unwrap();
        let request = crate::wait_until(
            std::time::Duration::from_secs(10),
            "the request",
            || async { requests.take().ok_or("none yet".to_string()) },
        )
        .await;
        assert_eq!(
            request,
            RestartRequest {
                member: 2,
                group: "g".into(),
                endpoint: "198.18.0.1:10911".into()
            }
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "it waits for the answer"
        );
        requests.answer();
        assert!(child.wait().unwrap().success());
    }
}
