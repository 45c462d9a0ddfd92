//! The scheduled messages page: what waits for its delivery time on every broker group,
//! earliest due first (`apogee schedule list`: the same columns), each with a recall form,
//! and each broker group's counters (`apogee schedule stats`). A recall asks for a
//! confirmation first, then recalls the message as `apogee message recall` does (a producer
//! of the client library, signed as the page's user) and comes back to the list saying so.

use crate::page::{encode, render, Chrome, Failure, Page, PageResult};
use crate::pages::row_actions::{
    confirm_page, confirmed, ActionTable, ListQuery, Outcome, RowForm,
};
use crate::pages::Table;
use crate::Console;
use apogee_admin::schedule;
use askama::Template;
use axum::extract::{Form, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

const SECTION: &str = "scheduled";
const LIST: &str = "/console/scheduled";
const RECALL: &str = "/console/scheduled/recall";

/// What a recall's redirect may say.
const VERBS: &[&str] = &["recalled"];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/scheduled", get(show))
        .route("/scheduled/recall", post(recall))
}

#[derive(Template)]
#[template(path = "scheduled.html")]
struct ScheduledPage<'a> {
    chrome: &'a Chrome,
    topic: &'a str,
    actions: ActionTable,
    stats: Table,
    outcome: Option<Outcome>,
}

async fn show(page: Page, Query(q): Query<ListQuery>) -> PageResult {
    let topic = q.topic();
    let admin = page.admin();
    let rows = admin
        .list_scheduled(Some(topic).filter(|t| !t.is_empty()), None)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let stats = admin
        .schedule_stats()
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let table = Table::of(
        "scheduled",
        &rows,
        "No message waits for its delivery time.",
        |r| Some(("message-id", r.message_id.clone())),
    )
    .link_column("TOPIC", |t| format!("/console/topics/{}", encode(t)));
    let actions = ActionTable::new(table, |i| {
        vec![recall_form(
            &rows[i].topic,
            &rows[i].recall_handle,
            &rows[i].message_id,
        )]
    });
    let chrome = page.chrome(SECTION);
    let html = render(&ScheduledPage {
        chrome: &chrome,
        topic,
        actions,
        stats: Table::of("schedule-stats", &stats, "No broker group answered.", |s| {
            Some(("broker", s.broker.clone()))
        }),
        outcome: q.outcome(VERBS),
    })?;
    Ok(html.into_response())
}

/// The recall form of the message `message_id` of `topic` with `handle`.
fn recall_form(topic: &str, handle: &str, message_id: &str) -> RowForm {
    RowForm::new("recall", "Recall", RECALL)
        .field("topic", topic)
        .field("handle", handle)
        .field("message_id", message_id)
        .titled(format!("Recall message {message_id}"))
        .danger()
}

#[derive(Deserialize)]
struct RecallForm {
    topic: String,
    handle: String,
    /// Only for the confirmation's question.
    message_id: Option<String>,
    confirm: Option<String>,
}

/// Asks first; once confirmed recalls and redirects to the list, which says so.
async fn recall(page: Page, Form(f): Form<RecallForm>) -> PageResult {
    let topic = f.topic.trim();
    if topic.is_empty() || f.handle.trim().is_empty() {
        return Err(page.fail(
            SECTION,
            Failure::bad_request("a recall needs the message's topic and recall handle"),
        ));
    }
    let message_id = f.message_id.as_deref().unwrap_or_default();
    if !confirmed(f.confirm.as_deref()) {
        let question = format!(
            "Recall message {message_id} of topic {topic}? It is removed before its delivery \
             time and never delivered; this cannot be undone."
        );
        let form = recall_form(topic, &f.handle, message_id);
        return confirm_page(&page, SECTION, &question, form, LIST);
    }
    let row = schedule::recall(page.client_config(), topic, f.handle.trim())
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        message = %row.message_id,
        topic,
        user = ?page.chrome(SECTION).user,
        "console: recalled a scheduled message"
    );
    let to = format!("{LIST}?{}", Outcome::query(VERBS[0], &row.message_id));
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recall_form_carries_what_the_recall_needs() {
        let form = recall_form("reminders", "R1-abc", "M1");
        assert_eq!((form.class, form.action.as_str()), ("recall", RECALL));
        let names: Vec<&str> = form.fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, vec!["topic", "handle", "message_id"]);
        assert_eq!(form.fields[1].1, "R1-abc");
    }
}
