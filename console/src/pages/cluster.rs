//! The cluster page: every broker process with its role, epoch, log end, replication lag,
//! in-sync state and last heartbeat (`apogee cluster list`, each member asked with the
//! user's credentials), the controller's state when a member runs in controller mode
//! (`apogee controller status`'s groups and members as tables), and the NameServers the
//! brokers register with, and each member's object-store tier when one has a tier (`apogee
//! tier status`). A user who is not an admin sees the brokers as the NameServer knows
//! them (`apogee cluster info`) and a sentence saying what else needs an admin.

use crate::page::{render, Chrome, Page, PageResult};
use crate::pages::user_scope::{self, Subject, UserScope};
use crate::pages::{Cell, Row, Table};
use crate::Console;
use apogee_admin::broker_status::MEMBER_STATUS_TIMEOUT;
use apogee_admin::controller::{master_since, ControllerMemberView, ControllerStatusView};
use apogee_admin::message_query::rfc3339;
use apogee_admin::replication_view::ClusterRow;
use apogee_admin::tier::TierRow;
use apogee_admin::views::{format_ago, BrokerRow};
use askama::Template;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn routes() -> Router<Arc<Console>> {
    Router::new().route("/cluster", get(show))
}

#[derive(Template)]
#[template(path = "cluster.html")]
struct ClusterPage<'a> {
    chrome: &'a Chrome,
    brokers: Table,
    /// Controller mode: the controller's state, or why it could not be read.
    controller: Option<ControllerSection>,
    /// None for a user who is not an admin (the brokers' answers name them).
    nameservers: Option<Table>,
    /// The members with an object-store tier (`apogee tier status`'s rows), from the same
    /// answers; None when no member has one.
    tier: Option<Table>,
    /// A user who is not an admin: what they see here and why.
    user_scope: Option<UserScope>,
}

/// The controller's state as `apogee controller status` prints it: a line for the node,
/// then its broker groups and their members as tables; or why it could not be read.
pub struct ControllerSection {
    /// Why the controller's state could not be read (the tables are then empty).
    pub error: Option<String>,
    pub summary: String,
    /// The CLI's groups (master, master epoch, in-sync set and epoch), and when each master
    /// took over.
    pub groups: Table,
    /// The CLI's members: member id, role, address, priority, last epoch, log end, in sync.
    pub members: Table,
}

async fn show(page: Page) -> PageResult {
    let user_scope = user_scope::scope(&page, Subject::Cluster).await;
    if user_scope.is_some() {
        return show_registered(&page, user_scope).await;
    }
    let admin = page.admin();
    let rows = admin
        .cluster_list(MEMBER_STATUS_TIMEOUT)
        .await
        .map_err(|e| page.fail("cluster", e))?;
    let controller = if rows.iter().any(|r| r.member.is_controller_mode()) {
        Some(match admin.controller_status().await {
            Ok(status) => controller_section(&status, &rows, apogee_proto::time::now_ms()),
            Err(e) => ControllerSection::failed(e.to_string()),
        })
    } else {
        None
    };
    let brokers = Table::of("brokers", &rows, "No broker has registered.", |r| {
        Some(("broker", broker_key(&r.member)))
    });
    let chrome = page.chrome("cluster");
    let html = render(&ClusterPage {
        chrome: &chrome,
        brokers,
        controller,
        nameservers: Some(nameservers(
            page.console().settings().nameserver.as_str(),
            &rows,
        )),
        tier: tier_table(&rows),
        user_scope: None,
    })?;
    Ok(html.into_response())
}

/// The page of a user who is not an admin: the brokers as the NameServer knows them (its
/// registry answers any user), without asking the brokers or the controller.
async fn show_registered(page: &Page, user_scope: Option<UserScope>) -> PageResult {
    let rows = page
        .admin()
        .cluster_info()
        .await
        .map_err(|e| page.fail("cluster", e))?;
    let brokers = Table::of("brokers", &rows, "No broker has registered.", |r| {
        Some(("broker", broker_key(r)))
    });
    let chrome = page.chrome("cluster");
    Ok(render(&ClusterPage {
        chrome: &chrome,
        brokers,
        controller: None,
        nameservers: None,
        tier: None,
        user_scope,
    })?
    .into_response())
}

/// A broker row's `data-broker`: group and member id.
fn broker_key(member: &BrokerRow) -> String {
    format!("{}/{}", member.broker, member.member_id)
}

/// The controller's state in tables; `rows` (the brokers' answers) say when each master
/// took over.
pub fn controller_section(
    status: &ControllerStatusView,
    rows: &[ClusterRow],
    now: i64,
) -> ControllerSection {
    let mut summary = match status.leader_id {
        Some(leader) => format!(
            "Node {} of the controller; leader node {leader}, term {}.",
            status.node_id, status.term
        ),
        None => format!(
            "Node {} of the controller; no leader known (term {}).",
            status.node_id, status.term
        ),
    };
    summary.push_str(
        match (status.stale, &status.stale_reason) {
            (false, _) => " The state below is confirmed by the leader.".to_string(),
            (true, Some(why)) => {
                format!(" The state below is this node's own, not confirmed by the leader: {why}.")
            }
            (true, None) => {
                " The state below is this node's own, not confirmed by the leader.".to_string()
            }
        }
        .as_str(),
    );
    let mut groups = Table::of(
        "controller-groups",
        &status.groups,
        "No broker group in the controller yet.",
        |g| Some(("broker", g.broker.clone())),
    );
    groups.headers.push("MASTER SINCE".into());
    for (row, g) in groups.rows.iter_mut().zip(&status.groups) {
        let since = master_since(g, rows).map_or_else(
            || "-".to_string(),
            |t| format!("{} ({} ago)", rfc3339(t), format_ago((now - t).max(0))),
        );
        row.cells.push(Cell::from(since));
    }
    let members: Vec<ControllerMemberView> = status
        .groups
        .iter()
        .flat_map(|g| g.members.iter().cloned())
        .collect();
    let members = Table::of(
        "controller-members",
        &members,
        "No member in the controller yet.",
        |m| Some(("member", format!("{}/{}", m.broker, m.member_id))),
    );
    ControllerSection {
        error: None,
        summary,
        groups,
        members,
    }
}

impl ControllerSection {
    /// The section when the controller's state could not be read, saying why.
    fn failed(why: String) -> ControllerSection {
        let empty = |id| Table::new(id, Vec::new(), "");
        ControllerSection {
            error: Some(why),
            summary: String::new(),
            groups: empty("controller-groups"),
            members: empty("controller-members"),
        }
    }
}

/// Each member's object-store tier, as `apogee tier status` shows it; None when no member
/// that answered has one.
pub fn tier_table(rows: &[ClusterRow]) -> Option<Table> {
    let tiers: Vec<TierRow> = rows
        .iter()
        .filter_map(|r| r.status.as_ref()?.tier.clone())
        .collect();
    (!tiers.is_empty()).then(|| {
        Table::of("tier-members", &tiers, "", |t| {
            Some(("broker", format!("{}/{}", t.broker_name, t.broker_id)))
        })
    })
}

/// This NameServer and every NameServer a reachable broker says it registers with.
fn nameservers(this: &str, rows: &[ClusterRow]) -> Table {
    let mut table = Table::new(
        "nameservers",
        vec![
            "NAMESERVER".into(),
            "BROKERS REGISTERED".into(),
            "NOTE".into(),
        ],
        "",
    );
    let mut all: BTreeSet<&str> = BTreeSet::from([this]);
    for r in rows {
        if let Some(s) = &r.status {
            all.extend(s.nameservers.iter().map(String::as_str));
        }
    }
    for ns in all {
        let count = rows
            .iter()
            .filter(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.nameservers.iter().any(|n| n == ns))
            })
            .count();
        let note = if ns == this {
            "this console's NameServer"
        } else {
            ""
        };
        table.rows.push(Row {
            key: Some(("nameserver", ns.to_string())),
            cells: vec![
                Cell::from(ns.to_string()),
                Cell::from(count.to_string()).with_class("num"),
                Cell::from(note.to_string()),
            ],
        });
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_admin::controller::ControllerGroupView;

    fn member(id: u64, master: bool) -> ControllerMemberView {
        ControllerMemberView {
            broker: "b".into(),
            member_id: id,
            address: format!("h:{id}"),
            priority: 0,
            last_epoch: 3,
            log_end: 100,
            is_master: master,
            in_sync: true,
        }
    }

    #[test]
    fn the_controller_shows_its_groups_and_members_in_the_clis_columns() {
        let status = ControllerStatusView {
            node_id: 1,
            leader_id: Some(1),
            is_leader: true,
            term: 2,
            last_applied_index: Some(9),
            last_applied_term: 2,
            stale: false,
            stale_reason: None,
            groups: vec![ControllerGroupView {
                broker: "b".into(),
                master: Some(2),
                master_epoch: 3,
                in_sync: vec![1, 2],
                in_sync_epoch: 4,
                members: vec![member(1, false), member(2, true)],
            }],
        };
        let c = controller_section(&status, &[], 0);
        assert!(c.summary.contains("leader node 1, term 2"), "{}", c.summary);
        assert_eq!(
            c.groups.headers.last().map(String::as_str),
            Some("MASTER SINCE")
        );
        assert_eq!(c.groups.rows[0].cells[1].text, "2");
        assert_eq!(c.groups.rows[0].cells[2].text, "3");
        assert!(c.members.headers.iter().any(|h| h == "LAST EPOCH"));
        let keys: Vec<_> = c.members.rows.iter().map(|r| r.key.clone()).collect();
        assert_eq!(
            keys,
            [
                Some(("member", "b/1".into())),
                Some(("member", "b/2".into()))
            ]
        );
        assert_eq!(c.members.rows[1].cells[2].text, "master");
    }
}
