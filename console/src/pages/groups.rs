//! The consumer groups pages: every group with its lag, largest first (`apogee group list
//! --lag`, one call however many groups there are), filtered and paged on the server; one
//! group's settings, progress per queue and connected clients (`apogee group describe`); an
//! offset reset, planned by a dry run before it is executed (`apogee group reset-offset`);
//! and the group's dead letters, resent one by one or all at once (`apogee dlq list|resend`).

use crate::page::{encode, render, Chrome, Failure, Page, PageResult};
use crate::pages::messages::ShownBody;
use crate::pages::user_scope::{self, Subject, UserScope};
use crate::pages::Table;
use crate::Console;
use apogee_admin::dlq::{DeadLetterRow, ResendRow};
use apogee_admin::group::{GroupDescription, GroupLagRow};
use apogee_admin::message_query::rfc3339;
use apogee_admin::reset_offset::{self, ResetOffset, ResetTo};
use askama::Template;
use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// Groups per page of the list.
pub const GROUPS_PER_PAGE: usize = 50;

/// Dead letters the dead-letters page lists, per broker group.
pub const DEAD_LETTERS_SHOWN: u32 = 200;

const SECTION: &str = "groups";

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/groups", get(list))
        .route("/groups/{group}", get(show))
        .route("/groups/{group}/reset", post(reset))
        .route("/groups/{group}/dead-letters", get(dead_letters))
        .route("/groups/{group}/dead-letters/resend", post(resend))
        .route("/groups/{group}/dead-letters/view", get(dead_letter))
}

/// The console path of a group's page.
fn group_href(group: &str) -> String {
    format!("{}/groups/{}", crate::BASE, encode(group))
}

/// Gives every cell of column `header` the CSS class `class` (`lag`, `num`).
fn class_column(mut table: Table, header: &str, class: &'static str) -> Table {
    if let Some(i) = table.headers.iter().position(|h| h == header) {
        for row in &mut table.rows {
            if let Some(cell) = row.cells.get_mut(i) {
                cell.class = Some(class);
            }
        }
    }
    table
}

fn numeric_columns(table: Table, headers: &[&str]) -> Table {
    headers.iter().fold(table, |t, h| class_column(t, h, "num"))
}

// ---- The list ----

#[derive(Deserialize, Default)]
struct ListQuery {
    filter: Option<String>,
    page: Option<usize>,
}

/// One page of the groups a filter keeps, and links to its neighbours.
#[derive(Debug, PartialEq)]
struct Paged<T> {
    rows: Vec<T>,
    /// Groups the filter kept, over every page.
    matching: usize,
    /// 0-based, clamped to the last page.
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
}

/// The rows whose name holds `filter` (case-insensitive), in their order, page `page`.
fn page_of<T>(rows: Vec<T>, name: impl Fn(&T) -> &str, filter: &str, page: usize) -> Paged<T> {
    let needle = filter.trim().to_lowercase();
    let kept: Vec<T> = rows
        .into_iter()
        .filter(|r| needle.is_empty() || name(r).to_lowercase().contains(&needle))
        .collect();
    let matching = kept.len();
    let pages = matching.div_ceil(GROUPS_PER_PAGE).max(1);
    let page = page.min(pages - 1);
    let link = |p: usize| {
        let mut href = format!("{}/groups?page={p}", crate::BASE);
        if !needle.is_empty() {
            href.push_str(&format!("&filter={}", encode(filter.trim())));
        }
        href
    };
    Paged {
        rows: kept
            .into_iter()
            .skip(page * GROUPS_PER_PAGE)
            .take(GROUPS_PER_PAGE)
            .collect(),
        matching,
        page,
        pages,
        prev: (page > 0).then(|| link(page - 1)),
        next: (page + 1 < pages).then(|| link(page + 1)),
    }
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage<'a> {
    chrome: &'a Chrome,
    filter: &'a str,
    groups: Table,
    matching: usize,
    total: usize,
    page: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
    /// A user who is not an admin: what they see here and why.
    user_scope: Option<UserScope>,
}

async fn list(page: Page, Query(q): Query<ListQuery>) -> PageResult {
    let all = page
        .admin()
        .group_lags()
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let total = all.len();
    let filter = q.filter.unwrap_or_default();
    let paged = page_of(
        all,
        |r: &GroupLagRow| r.group.group.as_str(),
        &filter,
        q.page.unwrap_or(0),
    );
    let empty = if filter.trim().is_empty() {
        "No consumer group yet."
    } else {
        "No group name holds that text."
    };
    let user_scope = user_scope::scope(&page, Subject::Groups).await;
    let groups = Table::of("groups", &paged.rows, empty, |r| {
        Some(("group", r.group.group.clone()))
    });
    // A group's page needs an admin: a user who is not one gets the names without links.
    let groups = match user_scope {
        None => groups.link_column("GROUP", group_href),
        Some(_) => groups,
    };
    let groups = numeric_columns(class_column(groups, "LAG", "lag"), &["IN FLIGHT"]);
    let chrome = page.chrome(SECTION);
    Ok(render(&GroupsPage {
        chrome: &chrome,
        filter: filter.trim(),
        groups,
        matching: paged.matching,
        total,
        page: paged.page,
        pages: paged.pages,
        prev: paged.prev,
        next: paged.next,
        user_scope,
    })?
    .into_response())
}

// ---- One group ----

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage<'a> {
    chrome: &'a Chrome,
    group: &'a str,
    href: String,
    lag: u64,
    inflight: u64,
    settings: Table,
    queues: Table,
    clients: Table,
    /// The topics the group consumes, offered to the reset form.
    topics: Vec<String>,
}

async fn describe(page: &Page, group: &str) -> Result<GroupDescription, Failure> {
    page.admin()
        .describe_group(group)
        .await
        .map_err(|e| page.fail(SECTION, e))
}

async fn show(page: Page, Path(group): Path<String>) -> PageResult {
    let d = describe(&page, &group).await?;
    let settings = Table::of("group-settings", std::slice::from_ref(&d.group), "", |_| {
        None
    });
    let queues = Table::of(
        "group-queues",
        &d.queues,
        "The group consumes no queue yet.",
        |q| Some(("queue", format!("{}/{}/{}", q.topic, q.broker, q.queue_id))),
    );
    let queues = numeric_columns(
        class_column(queues, "LAG", "lag"),
        &["QUEUE", "BROKER OFFSET", "CONSUMER OFFSET", "INFLIGHT"],
    );
    let clients = Table::of(
        "group-clients",
        &d.clients,
        "No client of the group is connected.",
        |c| Some(("client", c.client_id.clone())),
    );
    let mut topics: Vec<String> = d.queues.iter().map(|q| q.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let chrome = page.chrome(SECTION);
    Ok(render(&GroupPage {
        chrome: &chrome,
        group: &group,
        href: group_href(&group),
        lag: d.lag,
        inflight: d.inflight,
        settings,
        queues,
        clients,
        topics,
    })?
    .into_response())
}

// ---- Offset reset ----

/// `form#reset-offset` (and `form#reset-execute`, which adds `execute=1`).
#[derive(Deserialize, Debug)]
struct ResetForm {
    topic: String,
    /// RFC 3339, `earliest` or `latest`.
    timestamp: String,
    execute: Option<String>,
}

/// The reset a form asks for.
fn reset_args(group: &str, form: &ResetForm) -> Result<ResetOffset, Failure> {
    let topic = form.topic.trim();
    if topic.is_empty() {
        return Err(Failure::bad_request("give the topic whose offsets move"));
    }
    let when = form.timestamp.trim();
    let to = match when.to_ascii_lowercase().as_str() {
        "earliest" => ResetTo::Earliest,
        "latest" => ResetTo::Latest,
        "" => {
            return Err(Failure::bad_request(
                "give the time to move to: an RFC 3339 time, earliest or latest",
            ))
        }
        _ => ResetTo::Time(
            apogee_admin::schedule::parse_time(when)
                .map_err(|e| Failure::bad_request(format!("{e}, or earliest or latest")))?,
        ),
    };
    Ok(ResetOffset {
        group: group.to_string(),
        topic: topic.to_string(),
        to,
        execute: form.execute.as_deref() == Some("1"),
    })
}

#[derive(Template)]
#[template(path = "group_reset.html")]
struct ResetPage<'a> {
    chrome: &'a Chrome,
    group: &'a str,
    href: String,
    topic: &'a str,
    timestamp: &'a str,
    plan: Table,
    executed: bool,
}

async fn reset(page: Page, Path(group): Path<String>, Form(form): Form<ResetForm>) -> PageResult {
    let args = reset_args(&group, &form).map_err(|e| page.fail(SECTION, e))?;
    let resp = page
        .admin()
        .reset_offset(&args)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let rows = reset_offset::rows(&resp);
    let plan = Table::of(
        "reset-plan",
        &rows,
        "The group has no queue of this topic to move.",
        |r| Some(("queue", format!("{}/{}", r.broker, r.queue))),
    );
    let plan = numeric_columns(plan, &["QUEUE", "CURRENT", "NEW", "CHANGE", "IN FLIGHT"]);
    if resp.executed {
        tracing::info!(group, topic = args.topic, "console: group offsets reset");
    }
    let chrome = page.chrome(SECTION);
    Ok(render(&ResetPage {
        chrome: &chrome,
        group: &group,
        href: group_href(&group),
        topic: &args.topic,
        timestamp: form.timestamp.trim(),
        plan,
        executed: resp.executed,
    })?
    .into_response())
}

// ---- Dead letters ----

#[derive(Template)]
#[template(path = "group_dead_letters.html")]
struct DeadLettersPage<'a> {
    chrome: &'a Chrome,
    group: &'a str,
    href: String,
    dead_letters: Table,
    shown_per_broker: u32,
    /// After a resend: what it did.
    notice: Option<String>,
    results: Option<Table>,
    failed: Option<String>,
}

/// `form.resend`: one dead letter by id, or (no id) all of the group's.
#[derive(Deserialize, Debug)]
struct ResendForm {
    id: Option<String>,
}

async fn dead_letters_page(page: &Page, group: &str, resent: Option<&[ResendRow]>) -> PageResult {
    let rows: Vec<DeadLetterRow> = page
        .admin()
        .list_dead_letters(group, Some(DEAD_LETTERS_SHOWN), false)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let dead_letters = Table::of(
        "dead-letters",
        &rows,
        "The group has no dead letters.",
        |r| Some(("message-id", r.message_id.clone())),
    );
    let mut dead_letters = numeric_columns(dead_letters, &["ATTEMPTS"]);
    for (row, letter) in dead_letters.rows.iter_mut().zip(&rows) {
        if let Some(cell) = row.cells.first_mut() {
            cell.href = Some(dead_letter_href(group, &letter.message_id));
        }
    }
    let results = resent.map(|r| {
        Table::of("resend-results", r, "", |r| {
            Some(("message-id", r.message_id.clone()))
        })
    });
    let chrome = page.chrome(SECTION);
    Ok(render(&DeadLettersPage {
        chrome: &chrome,
        group,
        href: group_href(group),
        dead_letters,
        shown_per_broker: DEAD_LETTERS_SHOWN,
        notice: resent.map(|r| resend_notice(group, r)),
        results,
        failed: resent.and_then(resend_failures),
    })?
    .into_response())
}

async fn dead_letters(page: Page, Path(group): Path<String>) -> PageResult {
    dead_letters_page(&page, &group, None).await
}

/// The console path of one dead letter's page.
fn dead_letter_href(group: &str, id: &str) -> String {
    format!("{}/dead-letters/view?id={}", group_href(group), encode(id))
}

#[derive(Deserialize)]
struct DeadLetterQuery {
    id: String,
}

#[derive(Template)]
#[template(path = "group_dead_letter.html")]
struct DeadLetterPage<'a> {
    chrome: &'a Chrome,
    group: &'a str,
    href: String,
    id: &'a str,
    properties: Vec<(String, String)>,
    body: ShownBody,
}

/// One dead letter of the list: where it came from, its properties and its body.
async fn dead_letter(
    page: Page,
    Path(group): Path<String>,
    Query(q): Query<DeadLetterQuery>,
) -> PageResult {
    let id = q.id.trim();
    let rows = page
        .admin()
        .list_dead_letters(&group, Some(DEAD_LETTERS_SHOWN), true)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let Some(letter) = rows.iter().find(|r| r.message_id == id) else {
        let why = format!(
            "group {group} has no dead letter {id} among the {DEAD_LETTERS_SHOWN} per broker \
             group listed"
        );
        return Err(page.fail(SECTION, Failure::new(StatusCode::NOT_FOUND, why)));
    };
    let chrome = page.chrome(SECTION);
    Ok(render(&DeadLetterPage {
        chrome: &chrome,
        group: &group,
        href: group_href(&group),
        id,
        properties: dead_letter_properties(letter),
        body: dead_letter_body(letter),
    })?
    .into_response())
}

/// Where a dead letter came from and what it carries, for its page.
fn dead_letter_properties(d: &DeadLetterRow) -> Vec<(String, String)> {
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut all: Vec<(String, String)> = [
        ("Message id", d.message_id.clone()),
        ("Original topic", d.original_topic.clone()),
        ("Original queue", d.original_queue_id.to_string()),
        ("Original queue offset", d.original_queue_offset.to_string()),
        ("Delivery attempts", d.attempts.to_string()),
        ("Dead-lettered", d.store_time.clone()),
        ("Tag", or_dash(d.tag.as_deref().unwrap_or(""))),
        ("Keys", or_dash(&d.keys.join(", "))),
        ("Broker", d.broker.clone()),
        ("Dead-letter queue offset", d.dlq_offset.to_string()),
        ("Resent", d.resent_at_ms.map_or("never".into(), rfc3339)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    all.extend(
        d.properties
            .iter()
            .map(|(k, v)| (format!("Property {k}"), v.clone())),
    );
    all
}

/// A dead letter's body as its page shows it (listed with its body: text or hex).
fn dead_letter_body(d: &DeadLetterRow) -> ShownBody {
    let body = d.body.as_deref().unwrap_or("");
    let hex = d.body_format.as_deref() == Some("hex");
    let size = if hex { body.len() / 2 } else { body.len() };
    ShownBody::new(body, hex, size, "apogee dlq list --show-body -o json")
}

async fn resend(page: Page, Path(group): Path<String>, Form(form): Form<ResendForm>) -> PageResult {
    let id = form.id.as_deref().map(str::trim).filter(|i| !i.is_empty());
    let results = page
        .admin()
        .resend_dead_letters(&group, id)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        group,
        id,
        count = results.len(),
        "console: dead letters resent"
    );
    dead_letters_page(&page, &group, Some(&results)).await
}

/// What a resend did, in one sentence.
fn resend_notice(group: &str, results: &[ResendRow]) -> String {
    if results.is_empty() {
        return format!("Group {group} has no dead letters to resend: nothing was resent.");
    }
    let count = |outcome: &str| results.iter().filter(|r| r.outcome == outcome).count();
    let mut parts = Vec::new();
    let resent: Vec<String> = results
        .iter()
        .filter(|r| r.outcome == "RESENT")
        .map(|r| format!("{} to {}", r.message_id, r.original_topic))
        .collect();
    if !resent.is_empty() {
        parts.push(format!("resent {}: {}", resent.len(), resent.join(", ")));
    }
    match count("ALREADY_RESENT") {
        0 => {}
        n => parts.push(format!("{n} already resent before (not written again)")),
    }
    match count("FAILED") {
        0 => {}
        n => parts.push(format!("{n} failed")),
    }
    format!("Dead letters of group {group}: {}.", parts.join("; "))
}

/// The resends that failed and why, if any.
fn resend_failures(results: &[ResendRow]) -> Option<String> {
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.outcome == "FAILED")
        .map(|r| format!("{}: {}", r.message_id, r.detail))
        .collect();
    (!failed.is_empty()).then(|| format!("Could not resend {}", failed.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("group-{i:03}")).collect()
    }

    #[test]
    fn the_list_pages_by_fifty_and_links_its_neighbours() {
        let first = page_of(names(120), |s| s.as_str(), "", 0);
        assert_eq!(first.rows.len(), GROUPS_PER_PAGE);
        assert_eq!(first.rows[0], "group-000");
        assert_eq!((first.matching, first.pages), (120, 3));
        assert_eq!(first.prev, None);
        assert_eq!(first.next.as_deref(), Some("/console/groups?page=1"));
        let last = page_of(names(120), |s| s.as_str(), "", 2);
        assert_eq!(last.rows.len(), 20);
        assert_eq!(last.rows[0], "group-100");
        assert_eq!(last.prev.as_deref(), Some("/console/groups?page=1"));
        assert_eq!(last.next, None);
        // A page past the end shows the last one.
        assert_eq!(page_of(names(120), |s| s.as_str(), "", 9).page, 2);
        let none = page_of(Vec::<String>::new(), |s| s.as_str(), "", 0);
        assert_eq!((none.pages, none.prev, none.next), (1, None, None));
    }

    #[test]
    fn the_filter_keeps_names_holding_it_in_any_case_and_stays_in_the_links() {
        let mut rows = names(60);
        rows.push("Billing-EU".into());
        rows.push("billing us".into());
        let kept = page_of(rows.clone(), |s| s.as_str(), " BILLING ", 0);
        assert_eq!(kept.rows, vec!["Billing-EU", "billing us"]);
        assert_eq!(kept.matching, 2);
        let paged = page_of(rows, |s| s.as_str(), "group 0", 0);
        assert!(paged.rows.is_empty());
        let many = page_of(names(120), |s| s.as_str(), "group-", 0);
        assert_eq!(
            many.next.as_deref(),
            Some("/console/groups?page=1&filter=group-")
        );
        let spaced = page_of(names(120), |s| s.as_str(), "a b", 0);
        assert_eq!(spaced.matching, 0);
        let with_space: Vec<String> = (0..51).map(|i| format!("a b{i}")).collect();
        assert_eq!(
            page_of(with_space, |s| s.as_str(), "a b", 0)
                .next
                .as_deref(),
            Some("/console/groups?page=1&filter=a%20b")
        );
    }

    fn form(topic: &str, timestamp: &str, execute: Option<&str>) -> ResetForm {
        ResetForm {
            topic: topic.into(),
            timestamp: timestamp.into(),
            execute: execute.map(str::to_string),
        }
    }

    #[test]
    fn a_reset_form_becomes_the_reset_it_asks_for() {
        let a = reset_args("g", &form(" orders ", "earliest", None)).unwrap();
        assert_eq!((a.group.as_str(), a.topic.as_str()), ("g", "orders"));
        assert_eq!((a.to, a.execute), (ResetTo::Earliest, false));
        let a = reset_args("g", &form("orders", "LATEST", Some("1"))).unwrap();
        assert_eq!((a.to, a.execute), (ResetTo::Latest, true));
        let a = reset_args("g", &form("orders", "2026-11-22T09:00:00Z", None)).unwrap();
        let ResetTo::Time(at) = a.to else {
            panic!("{:?}", a.to)
        };
        let ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(ms, 1_795_338_000_000);
        // Anything but execute=1 is a dry run.
        assert!(
            !reset_args("g", &form("orders", "latest", Some("on")))
                .unwrap()
                .execute
        );
        for (topic, timestamp) in [("", "earliest"), ("orders", ""), ("orders", "yesterday")] {
            let e = reset_args("g", &form(topic, timestamp, None)).unwrap_err();
            assert_eq!(
                e.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{topic} {timestamp}"
            );
        }
    }

    fn resent(id: &str, outcome: &str, detail: &str) -> ResendRow {
        ResendRow {
            message_id: id.into(),
            original_topic: "orders".into(),
            outcome: outcome.into(),
            queue_id: None,
            queue_offset: None,
            resent_at_ms: None,
            dlq_offset: 0,
            broker: "b".into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn a_resend_says_what_it_did() {
        assert_eq!(
            resend_notice("g", &[]),
            "Group g has no dead letters to resend: nothing was resent."
        );
        let results = [
            resent("M1", "RESENT", ""),
            resent("M2", "ALREADY_RESENT", ""),
            resent("M3", "FAILED", "topic orders is gone"),
        ];
        assert_eq!(
            resend_notice("g", &results),
            "Dead letters of group g: resent 1: M1 to orders; \
             1 already resent before (not written again); 1 failed."
        );
        assert_eq!(
            resend_failures(&results).as_deref(),
            Some("Could not resend M3: topic orders is gone")
        );
        assert_eq!(resend_failures(&results[..2]), None);
    }

    #[test]
    fn lag_and_number_columns_get_their_classes() {
        let rows = [reset_offset::ResetRow {
            broker: "b".into(),
            queue: 0,
            current_offset: 3,
            new_offset: 0,
            change: -3,
            inflight: 0,
        }];
        let t = Table::of("t", &rows, "", |_| None);
        let t = class_column(numeric_columns(t, &["NEW"]), "CHANGE", "lag");
        let classes: Vec<Option<&str>> = t.rows[0].cells.iter().map(|c| c.class).collect();
        assert_eq!(
            classes,
            vec![None, None, None, Some("num"), Some("lag"), None]
        );
    }
}
