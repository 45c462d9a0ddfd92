//! The transactions page: every broker group's pending and parked half messages (`apogee txn
//! list --pending`: the same columns), each with a commit and a rollback form. Either asks for
//! a confirmation first (the decision cannot be taken back), then resolves the transaction
//! (`apogee txn commit|rollback`) and comes back to the list saying what the transaction now
//! is.

use crate::page::{encode, render, Chrome, Page, PageResult};
use crate::pages::row_actions::{
    confirm_page, confirmed, path_segment, ActionTable, ListQuery, Outcome, RowForm,
};
use crate::pages::Table;
use crate::Console;
use askama::Template;
use axum::extract::{Form, Path, Query};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

const SECTION: &str = "transactions";
const LIST: &str = "/console/transactions";

/// What a resolved transaction's redirect may say.
const VERBS: &[&str] = &["committed", "rolled back"];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/transactions", get(show))
        .route("/transactions/{id}/commit", post(commit))
        .route("/transactions/{id}/rollback", post(rollback))
}

#[derive(Template)]
#[template(path = "transactions.html")]
struct TransactionsPage<'a> {
    chrome: &'a Chrome,
    topic: &'a str,
    actions: ActionTable,
    outcome: Option<Outcome>,
}

async fn show(page: Page, Query(q): Query<ListQuery>) -> PageResult {
    let topic = q.topic();
    let rows = page
        .admin()
        .list_transactions(true, Some(topic).filter(|t| !t.is_empty()), None)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    let table = Table::of(
        "transactions",
        &rows,
        "No transaction is pending or parked.",
        |r| Some(("transaction-id", r.transaction_id.clone())),
    )
    .link_column("TOPIC", |t| format!("/console/topics/{}", encode(t)));
    let actions = ActionTable::new(table, |i| {
        let id = &rows[i].transaction_id;
        vec![resolve_form(id, true), resolve_form(id, false)]
    });
    let chrome = page.chrome(SECTION);
    let html = render(&TransactionsPage {
        chrome: &chrome,
        topic,
        actions,
        outcome: q.outcome(VERBS),
    })?;
    Ok(html.into_response())
}

/// The commit (or rollback) form of transaction `id`.
fn resolve_form(id: &str, commit: bool) -> RowForm {
    let (class, label, verb) = if commit {
        ("commit", "Commit", "commit")
    } else {
        ("rollback", "Roll back", "rollback")
    };
    let form = RowForm::new(class, label, format!("{LIST}/{}/{verb}", path_segment(id)))
        .titled(format!("{label} transaction {id}"));
    if commit {
        form
    } else {
        form.danger()
    }
}

#[derive(Deserialize)]
struct ResolveForm {
    confirm: Option<String>,
}

async fn commit(page: Page, Path(id): Path<String>, Form(f): Form<ResolveForm>) -> PageResult {
    resolve(page, id, f, true).await
}

async fn rollback(page: Page, Path(id): Path<String>, Form(f): Form<ResolveForm>) -> PageResult {
    resolve(page, id, f, false).await
}

/// Asks first; once confirmed resolves and redirects to the list, which says the outcome.
async fn resolve(page: Page, id: String, f: ResolveForm, commit: bool) -> PageResult {
    if !confirmed(f.confirm.as_deref()) {
        let question = if commit {
            format!(
                "Commit transaction {id}? Its message is delivered to consumers; this cannot be \
                 undone."
            )
        } else {
            format!(
                "Roll back transaction {id}? Its message is dropped and never delivered; this \
                 cannot be undone."
            )
        };
        return confirm_page(&page, SECTION, &question, resolve_form(&id, commit), LIST);
    }
    let row = page
        .admin()
        .resolve_transaction(&id, commit)
        .await
        .map_err(|e| page.fail(SECTION, e))?;
    tracing::info!(
        transaction = %row.transaction_id,
        state = %row.state,
        user = ?page.chrome(SECTION).user,
        "console: resolved a transaction"
    );
    let verb = if commit { VERBS[0] } else { VERBS[1] };
    let to = format!("{LIST}?{}", Outcome::query(verb, &row.transaction_id));
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_post_to_the_transactions_own_address() {
        let commit = resolve_form("T 1/x", true);
        assert_eq!(commit.action, "/console/transactions/T%201%2Fx/commit");
        assert!(!commit.danger);
        let rollback = resolve_form("T 1/x", false);
        assert_eq!(rollback.action, "/console/transactions/T%201%2Fx/rollback");
        assert_eq!((rollback.class, rollback.danger), ("rollback", true));
    }
}
