//! Users and ACL entries on a broker's Admin service: `ApplyAccess` merges what a NameServer
//! fans out into this broker group's [`crate::access::AccessTable`] (a master; slaves follow
//! by replication), and the listings answer from it. Creating, changing and deleting users
//! and entries is a NameServer's: it stamps each change and sends it to every master.

use crate::services::Broker;
use apogee_proto::cluster::{
    AccessRole, ApplyAccessRequest, ApplyAccessResponse, ListAclsRequest, ListAclsResponse,
    ListUsersResponse, UserSummary,
};
use apogee_proto::ApogeeError;
use tonic::Status;

/// Merges what a NameServer sends; `by` is who sent it (for the log).
pub fn apply(
    broker: &Broker,
    req: ApplyAccessRequest,
    by: &str,
) -> Result<ApplyAccessResponse, Status> {
    if !broker.membership().is_master() {
        return Err(ApogeeError::PreconditionFailed(
            "a slave takes users and ACL entries from its master".into(),
        )
        .into());
    }
    let users = req.users.len();
    let acls = req.acls.len();
    let changed = broker.access().apply(req.users, req.acls)?;
    tracing::info!(users, acls, changed, by, "applied users and ACL entries");
    Ok(ApplyAccessResponse {})
}

/// The live users (never their secrets).
pub fn list_users(broker: &Broker) -> ListUsersResponse {
    let state = broker.access().snapshot();
    ListUsersResponse {
        users: state
            .users()
            .map(|u| UserSummary {
                access_key: u.access_key.clone(),
                role: AccessRole::try_from(u.role).unwrap_or_default() as i32,
                updated_ms: u.updated_ms,
                bootstrap: false,
            })
            .collect(),
    }
}

pub fn list_acls(broker: &Broker, req: &ListAclsRequest) -> ListAclsResponse {
    let state = broker.access().snapshot();
    ListAclsResponse {
        entries: state
            .acls()
            .filter(|e| req.access_key.is_empty() || e.access_key == req.access_key)
            .cloned()
            .collect(),
    }
}

/// What a broker answers a change that only a NameServer makes.
pub fn on_a_nameserver(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is made on a NameServer (it applies it to every broker group)"
    ))
}
