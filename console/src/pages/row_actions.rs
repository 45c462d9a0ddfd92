//! What the operations pages (transactions, scheduled messages, users and ACLs) share:
//! tables whose rows end with action forms ([`ActionTable`], drawn by
//! `templates/action_table.html`), the confirmation step an irreversible action passes first
//! ([`confirmed`] and [`confirm_page`]: the row's button asks, a second POST with
//! `confirm=yes` acts; no JavaScript needed), and the notice a page shows after an action
//! redirected back to it ([`Outcome`], named by the query, never free text from it).

use crate::page::{render, Chrome, Page, PageResult};
use crate::pages::Table;
use askama::Template;
use axum::response::IntoResponse;

/// The value of the `confirm` field that makes an action happen.
pub const CONFIRMED: &str = "yes";

/// One form at the end of a row: a button posting hidden fields to `action`.
#[derive(Clone, Debug)]
pub struct RowForm {
    /// The form's class (what a test or a stylesheet names: `commit`, `recall`, ...).
    pub class: &'static str,
    pub action: String,
    pub fields: Vec<(&'static str, String)>,
    /// The button's text.
    pub label: &'static str,
    /// What the button does, for a screen reader (the label alone does not name the row).
    pub title: String,
    pub danger: bool,
}

impl RowForm {
    pub fn new(class: &'static str, label: &'static str, action: impl Into<String>) -> RowForm {
        RowForm {
            class,
            action: action.into(),
            fields: Vec::new(),
            label,
            title: label.to_string(),
            danger: false,
        }
    }

    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> RowForm {
        self.fields.push((name, value.into()));
        self
    }

    pub fn titled(mut self, title: impl Into<String>) -> RowForm {
        self.title = title.into();
        self
    }

    pub fn danger(mut self) -> RowForm {
        self.danger = true;
        self
    }

    /// The button's classes: `<class>-submit`, and `danger` for an irreversible action.
    pub fn button_class(&self) -> String {
        let danger = if self.danger { " danger" } else { "" };
        format!("{}-submit{danger}", self.class)
    }
}

/// A [`Table`] with the forms of each row (`forms[i]` ends `table.rows[i]`).
#[derive(Clone, Debug)]
pub struct ActionTable {
    pub table: Table,
    pub forms: Vec<Vec<RowForm>>,
}

impl ActionTable {
    /// `table` with `forms(i)` at the end of row `i`.
    pub fn new(table: Table, forms: impl Fn(usize) -> Vec<RowForm>) -> ActionTable {
        let forms = (0..table.rows.len()).map(forms).collect();
        ActionTable { table, forms }
    }

    /// Each row with its forms, as the template walks them.
    pub fn rows(&self) -> impl Iterator<Item = (&crate::pages::Row, &Vec<RowForm>)> {
        self.table.rows.iter().zip(self.forms.iter())
    }
}

/// `value` percent-encoded as one segment of a path (a `/` in it encoded too).
pub fn path_segment(value: &str) -> String {
    crate::page::encode(value).replace('/', "%2F")
}

/// Whether a form's `confirm` field says to act.
pub fn confirmed(confirm: Option<&str>) -> bool {
    confirm == Some(CONFIRMED)
}

#[derive(Template)]
#[template(path = "action_confirm.html")]
struct ConfirmPage<'a> {
    chrome: &'a Chrome,
    question: &'a str,
    form: &'a RowForm,
    back: &'a str,
}

/// The confirmation of an action: `question`, a button repeating `form` with
/// `confirm=yes`, and a way `back` to the page it came from (200).
pub fn confirm_page(
    page: &Page,
    section: &'static str,
    question: &str,
    form: RowForm,
    back: &str,
) -> PageResult {
    let chrome = page.chrome(section);
    let form = form.field("confirm", CONFIRMED);
    let html = render(&ConfirmPage {
        chrome: &chrome,
        question,
        form: &form,
        back,
    })?;
    Ok(html.into_response())
}

/// The query of a list page that resolves rows one at a time: an optional topic filter and the
/// outcome a finished action redirected back with.
#[derive(serde::Deserialize)]
pub struct ListQuery {
    pub topic: Option<String>,
    pub done: Option<String>,
    pub what: Option<String>,
}

impl ListQuery {
    /// The topic filter, trimmed ("" for none).
    pub fn topic(&self) -> &str {
        self.topic.as_deref().map(str::trim).unwrap_or_default()
    }

    /// The outcome to show, when it is one of `verbs`.
    pub fn outcome(&self, verbs: &[&'static str]) -> Option<Outcome> {
        Outcome::of(self.done.as_deref(), self.what.as_deref(), verbs)
    }
}

/// What an action did, as the page it redirects to says it: one of a fixed set of verbs
/// (the query's `done`) and what it was done to (`what`). An unknown verb says nothing, so a
/// link cannot make a page claim something it did not do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verb: &'static str,
    pub what: String,
}

impl Outcome {
    /// The outcome a redirect's query names, when its verb is one of `verbs`.
    pub fn of(done: Option<&str>, what: Option<&str>, verbs: &[&'static str]) -> Option<Outcome> {
        let done = done?;
        let verb = verbs.iter().find(|v| **v == done)?;
        Some(Outcome {
            verb,
            what: what.unwrap_or_default().to_string(),
        })
    }

    /// The query that names this outcome (`done=<verb>&what=<what>`, encoded).
    pub fn query(verb: &str, what: &str) -> String {
        format!(
            "done={}&what={}",
            crate::page::encode(verb),
            crate::page::encode(what)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::Row;

    #[test]
    fn only_known_verbs_make_an_outcome() {
        let verbs = ["committed", "rolled back"];
        assert_eq!(
            Outcome::of(Some("committed"), Some("T1"), &verbs),
            Some(Outcome {
                verb: "committed",
                what: "T1".into()
            })
        );
        assert_eq!(Outcome::of(Some("hacked"), Some("T1"), &verbs), None);
        assert_eq!(Outcome::of(None, Some("T1"), &verbs), None);
        assert_eq!(
            Outcome::query("rolled back", "a&b"),
            "done=rolled%20back&what=a%26b"
        );
    }

    #[test]
    fn only_the_word_yes_confirms() {
        assert!(confirmed(Some("yes")));
        assert!(!confirmed(Some("on")));
        assert!(!confirmed(None));
    }

    #[test]
    fn each_row_gets_its_own_forms() {
        let mut table = Table::new("t", vec!["NAME".into()], "none");
        for name in ["a", "b"] {
            table.rows.push(Row {
                key: Some(("name", name.into())),
                cells: vec![name.to_string().into()],
            });
        }
        let actions = ActionTable::new(table, |i| {
            vec![RowForm::new("drop", "Drop", "/console/x").field("row", i.to_string())]
        });
        let fields: Vec<String> = actions
            .rows()
            .map(|(_, forms)| forms[0].fields[0].1.clone())
            .collect();
        assert_eq!(fields, vec!["0", "1"]);
    }
}
