//! The cluster page: every broker process with its role, epoch, log end, replication lag,
//! in-sync state and last heartbeat (`apogee cluster list`, each member asked with the
//! user's credentials), the controller's state when a member runs in controller mode
//! (`apogee controller status`), and the NameServers the brokers register with.

use crate::page::{render, Chrome, Page, PageResult};
use crate::pages::{Cell, Row, Table};
use crate::Console;
use apogee_tools::broker_status::MEMBER_STATUS_TIMEOUT;
use apogee_tools::replication_view::ClusterRow;
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
    controller: Option<String>,
    nameservers: Table,
}

async fn show(page: Page) -> PageResult {
    let admin = page.admin();
    let rows = admin
        .cluster_list(MEMBER_STATUS_TIMEOUT)
        .await
        .map_err(|e| page.fail("cluster", e))?;
    let controller = if rows.iter().any(|r| r.member.is_controller_mode()) {
        let status = admin.controller_status().await.map_err(|e| e.to_string());
        Some(apogee_tools::controller::cluster_footer(
            status.as_ref().map_err(String::as_str),
            &rows,
            apogee_proto::time::now_ms(),
        ))
    } else {
        None
    };
    let brokers = Table::of("brokers", &rows, "No broker has registered.", |r| {
        Some((
            "broker",
            format!("{}/{}", r.member.broker, r.member.member_id),
        ))
    });
    let chrome = page.chrome("cluster");
    let html = render(&ClusterPage {
        chrome: &chrome,
        brokers,
        controller,
        nameservers: nameservers(page.console().settings().nameserver.as_str(), &rows),
    })?;
    Ok(html.into_response())
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
