//! The console's sections, one module each, and what their templates share: [`Table`], a
//! table of rows built from the CLI's own row types ([`TableRow`]: the same headers and
//! cells `apogee ... list` prints).

pub mod access;
pub mod cluster;
pub mod groups;
pub mod login;
pub mod messages;
pub mod rates;
pub mod row_actions;
pub mod scheduled;
pub mod topics;
pub mod transactions;
pub mod user_scope;

use crate::Console;
use apogee_admin::output::TableRow;
use axum::response::Redirect;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// Every page's route, relative to [`crate::BASE`].
pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/cluster") }))
        .merge(login::routes())
        .merge(cluster::routes())
        .merge(topics::routes())
        .merge(messages::routes())
        .merge(rates::routes())
        .merge(transactions::routes())
        .merge(scheduled::routes())
        .merge(access::routes())
        .merge(groups::routes())
}

/// One cell: text, optionally a link, optionally a class (`lag`, `num`).
#[derive(Clone, Debug, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    pub class: Option<&'static str>,
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell {
            text,
            ..Cell::default()
        }
    }
}

impl Cell {
    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: Some(href.into()),
            class: None,
        }
    }

    pub fn with_class(mut self, class: &'static str) -> Cell {
        self.class = Some(class);
        self
    }
}

/// One row; `key` becomes the row's `data-<attr>="<value>"`.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub key: Option<(&'static str, String)>,
    pub cells: Vec<Cell>,
}

/// A table as `templates/table.html` draws it.
#[derive(Clone, Debug)]
pub struct Table {
    /// The element id (what a test or a ticket names).
    pub id: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<Row>,
    /// What an empty table says.
    pub empty: &'static str,
}

impl Table {
    pub fn new(id: &'static str, headers: Vec<String>, empty: &'static str) -> Table {
        Table {
            id,
            headers,
            rows: Vec::new(),
            empty,
        }
    }

    /// A table of CLI rows: their headers and cells; `key` names each row.
    pub fn of<R: TableRow>(
        id: &'static str,
        rows: &[R],
        empty: &'static str,
        key: impl Fn(&R) -> Option<(&'static str, String)>,
    ) -> Table {
        let headers = R::headers().into_iter().map(str::to_string).collect();
        let mut table = Table::new(id, headers, empty);
        for r in rows {
            table.rows.push(Row {
                key: key(r),
                cells: r.cells().into_iter().map(Cell::from).collect(),
            });
        }
        table
    }

    /// Makes the cells of column `header` links, each to `href(cell text)`.
    pub fn link_column(mut self, header: &str, href: impl Fn(&str) -> String) -> Table {
        if let Some(i) = self.headers.iter().position(|h| h == header) {
            for row in &mut self.rows {
                if let Some(cell) = row.cells.get_mut(i) {
                    cell.href = Some(href(&cell.text));
                }
            }
        }
        self
    }
}
