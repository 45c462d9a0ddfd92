//! Making the changes of a [`Plan`] (`apogee config import-state --apply`) through the admin
//! API, one step after another in the plan's order; each step's outcome is reported, an
//! object that exists already included, and one failed step does not stop the rest.

use crate::admin::Admin;
use crate::rocketmq_state::{Plan, Step};
use apogee_admin::reset_offset::{ResetOffset, ResetTo};
use apogee_proto::auth::acl::ResourceKind;
use apogee_proto::cluster::{self, AccessRole};
use serde::Serialize;

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub action: &'static str,
    pub subject: String,
    pub detail: String,
    /// `done`, `exists` or `failed: <why>`.
    pub result: String,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        self.result.starts_with("failed")
    }
}

/// Makes every step of `plan`; topics go to the broker groups `brokers` (all when empty).
pub async fn apply(admin: &Admin, plan: &Plan, brokers: &[String]) -> Vec<Outcome> {
    let mut outcomes = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let result = match make(admin, step, brokers).await {
            Ok(Made::Done) => "done".to_string(),
            Ok(Made::Exists) => "exists".to_string(),
            Err(why) => format!("failed: {why}"),
        };
        outcomes.push(Outcome {
            action: step.action(),
            subject: step.subject(),
            detail: step.detail(),
            result,
        });
    }
    outcomes
}

enum Made {
    Done,
    Exists,
}

/// An answer of the admin API: made, or there already.
fn made<T>(answer: Result<T, tonic::Status>, admin: &Admin) -> Result<Made, String> {
    match answer {
        Ok(_) => Ok(Made::Done),
        Err(s) if s.code() == tonic::Code::AlreadyExists => Ok(Made::Exists),
        Err(s) => Err(admin.err(None)(s).to_string()),
    }
}

async fn make(admin: &Admin, step: &Step, brokers: &[String]) -> Result<Made, String> {
    let mut client = admin.admin_service();
    match step {
        Step::CreateUser {
            user,
            admin: is_admin,
            secret,
        } => {
            let role = if *is_admin {
                AccessRole::Admin
            } else {
                AccessRole::User
            };
            let req = cluster::CreateUserRequest {
                access_key: user.clone(),
                secret_key: secret.0.clone(),
                role: role as i32,
            };
            made(client.create_user(admin.req(req)).await, admin)
        }
        Step::Grant { grant, .. } => {
            let kind = if grant.topic {
                ResourceKind::Topic
            } else {
                ResourceKind::Group
            };
            let entry = cluster::AclEntry {
                access_key: grant.user.clone(),
                kind: kind.to_wire() as i32,
                pattern: grant.pattern.clone(),
                publish: grant.perm.publish,
                subscribe: grant.perm.subscribe,
                deny: grant.deny,
                ..Default::default()
            };
            let req = cluster::GrantRequest { entry: Some(entry) };
            made(client.grant(admin.req(req)).await, admin)
        }
        Step::CreateTopic(t) => {
            let mut message_types: Vec<i32> = t.kind.to_proto().iter().map(|m| *m as i32).collect();
            message_types.sort_unstable();
            let req = cluster::CreateTopicRequest {
                topic: Some(cluster::TopicConfig {
                    name: t.name.clone(),
                    queue_count: t.queues,
                    permission: t.perm.to_proto() as i32,
                    message_types,
                    lite_expire_after_secs: 0,
                }),
                broker_names: brokers.to_vec(),
            };
            made(client.create_topic(admin.req(req)).await, admin)
        }
        Step::CreateGroup { config, .. } => {
            let req = cluster::CreateGroupRequest {
                group: Some(config.clone()),
            };
            made(client.create_group(admin.req(req)).await, admin)
        }
        Step::PositionGroup { group, topic, .. } => {
            let reset = ResetOffset {
                group: group.clone(),
                topic: topic.clone(),
                to: ResetTo::Latest,
                execute: true,
            };
            admin
                .reset_offset(&reset)
                .await
                .map(|_| Made::Done)
                .map_err(|e| e.to_string())
        }
    }
}
