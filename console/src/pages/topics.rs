//! The topics pages: the list (`apogee topic list`, filtered and paged on the server so it
//! stays quick with ten thousand topics), creating a topic (`apogee topic create`, on every
//! broker group), and a topic's page: its route (`apogee topic route`), its queues' offsets
//! (`apogee topic status`), changing its queues or permission (`apogee topic update`),
//! deleting it after typing its name, and sending it a test message (`apogee send`, signed
//! as the signed-in user).

use crate::page::{encode, render, Chrome, Failure, Page, PageResult};
use crate::pages::user_scope::{self, Subject, UserScope};
use crate::pages::Table;
use crate::Console;
use apogee_admin::admin::{Perm, TopicInfo, TopicType};
use apogee_admin::messaging::{self, SendRow, SendSpec};
use askama::Template;
use axum::extract::{Form, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// Topics shown per page of the list.
pub const TOPICS_PER_PAGE: usize = 50;
/// The queue count the create form offers.
const DEFAULT_QUEUES: i32 = 8;
/// The permissions the update form offers, as the CLI spells them.
const PERMS: &[&str] = &["rw", "r", "w"];

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/topics", get(list).post(create))
        .route("/topics/{name}", get(show))
        .route("/topics/{name}/send", post(send_test))
        .route("/topics/{name}/update", post(update))
        .route("/topics/{name}/delete", post(delete))
}

/// The address of a topic's page.
pub fn topic_href(name: &str) -> String {
    format!("{}/topics/{}", crate::BASE, encode(name))
}

/// One page of the topics whose names hold a filter.
#[derive(Debug, PartialEq)]
struct Listing {
    rows: Vec<TopicInfo>,
    /// The page shown (0-based; past the end: the last page).
    page: usize,
    /// How many pages the matching topics fill (at least 1).
    pages: usize,
    /// How many topics match the filter.
    matching: usize,
}

/// The topics (sorted by name) whose names hold `filter` (any case), page `page` of them.
fn listing(topics: Vec<TopicInfo>, filter: &str, page: usize) -> Listing {
    let needle = filter.trim().to_lowercase();
    let mut matching: Vec<TopicInfo> = topics
        .into_iter()
        .filter(|t| needle.is_empty() || t.topic.to_lowercase().contains(&needle))
        .collect();
    matching.sort_by(|a, b| a.topic.cmp(&b.topic));
    let count = matching.len();
    let pages = count.div_ceil(TOPICS_PER_PAGE).max(1);
    let page = page.min(pages - 1);
    let rows = matching
        .into_iter()
        .skip(page * TOPICS_PER_PAGE)
        .take(TOPICS_PER_PAGE)
        .collect();
    Listing {
        rows,
        page,
        pages,
        matching: count,
    }
}

/// The list's address for `page`, keeping the filter and the system switch.
fn list_href(filter: &str, system: bool, page: usize) -> String {
    let mut href = format!("{}/topics?page={page}", crate::BASE);
    if !filter.is_empty() {
        href.push_str(&format!("&filter={}", encode(filter)));
    }
    if system {
        href.push_str("&system=1");
    }
    href
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    filter: String,
    #[serde(default)]
    page: String,
    #[serde(default)]
    system: String,
}

#[derive(Template)]
#[template(path = "topics.html")]
struct TopicsPage<'a> {
    chrome: &'a Chrome,
    filter: &'a str,
    system: bool,
    topics: Table,
    /// 1-based, for people.
    page: usize,
    pages: usize,
    matching: usize,
    prev: Option<String>,
    next: Option<String>,
    types: Vec<String>,
    default_queues: i32,
    /// A user who is not an admin: what they see here and why.
    user_scope: Option<UserScope>,
}

async fn list(page: Page, Query(q): Query<ListQuery>) -> PageResult {
    let system = q.system == "1";
    let wanted = q.page.trim().parse::<usize>().unwrap_or(0);
    let all = page
        .admin()
        .list_topics(system)
        .await
        .map_err(|e| page.fail("topics", e))?;
    let shown = listing(all, &q.filter, wanted);
    let user_scope = user_scope::scope(&page, Subject::Topics).await;
    let topics = Table::of("topics", &shown.rows, "No topic matches.", |t| {
        Some(("topic", t.topic.clone()))
    });
    // A topic's page needs an admin: a user who is not one gets the names without links.
    let topics = match user_scope {
        None => topics.link_column("TOPIC", topic_href),
        Some(_) => topics,
    };
    let chrome = page.chrome("topics");
    let filter = q.filter.trim();
    let html = render(&TopicsPage {
        chrome: &chrome,
        filter,
        system,
        topics,
        page: shown.page + 1,
        pages: shown.pages,
        matching: shown.matching,
        prev: (shown.page > 0).then(|| list_href(filter, system, shown.page - 1)),
        next: (shown.page + 1 < shown.pages).then(|| list_href(filter, system, shown.page + 1)),
        types: TopicType::names(),
        default_queues: DEFAULT_QUEUES,
        user_scope,
    })?;
    Ok(html.into_response())
}

#[derive(Deserialize)]
struct CreateForm {
    name: String,
    #[serde(default)]
    queues: String,
    #[serde(default, rename = "type")]
    kind: String,
}

/// A queue count typed in a form; empty means `default`.
fn queue_count(typed: &str, default: Option<i32>) -> Result<Option<i32>, Failure> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Ok(default);
    }
    typed
        .parse::<i32>()
        .map(Some)
        .map_err(|_| Failure::bad_request(format!("queues: {typed:?} is not a number")))
}

/// A topic type picked in a form; empty means NORMAL.
fn topic_type(picked: &str) -> Result<TopicType, Failure> {
    if picked.trim().is_empty() {
        return Ok(TopicType::Normal);
    }
    TopicType::parse(picked)
        .ok_or_else(|| Failure::bad_request(format!("type: {picked:?} is not a topic type")))
}

/// Creates the topic on every broker group, as `apogee topic create` does without
/// `--broker`, then shows it.
async fn create(page: Page, Form(f): Form<CreateForm>) -> PageResult {
    let fail = |e| page.fail("topics", e);
    let name = f.name.trim();
    let queues = queue_count(&f.queues, Some(DEFAULT_QUEUES))
        .map_err(fail)?
        .unwrap_or(DEFAULT_QUEUES);
    let kind = topic_type(&f.kind).map_err(fail)?;
    page.admin()
        .create_topic(name, queues, Vec::new(), &[kind], None)
        .await
        .map_err(|e| page.fail("topics", e))?;
    tracing::info!(topic = name, queues, "console: topic created");
    Ok(Redirect::to(&topic_href(name)).into_response())
}

/// What a topic's page says above its tables after an action.
#[derive(Default)]
struct Outcome {
    sent: Option<SendRow>,
    error: Option<String>,
    /// The test message form as last sent, to send again.
    draft: SendForm,
}

#[derive(Template)]
#[template(path = "topic.html")]
struct TopicPage<'a> {
    chrome: &'a Chrome,
    name: &'a str,
    href: String,
    route: Table,
    queues: Table,
    /// The queue count and permission the update form starts from.
    queue_count: i32,
    /// Each permission offered, and whether the topic has it.
    perms: Vec<(&'static str, bool)>,
    outcome: Outcome,
}

async fn show(page: Page, Path(name): Path<String>) -> PageResult {
    topic_page(&page, &name, StatusCode::OK, Outcome::default()).await
}

/// A topic's page with `outcome`, answered with `status`.
async fn topic_page(page: &Page, name: &str, status: StatusCode, outcome: Outcome) -> PageResult {
    let admin = page.admin();
    let (route, queues) = tokio::join!(admin.topic_route(name), admin.topic_status(name));
    let route = route.map_err(|e| page.fail("topics", e))?;
    let queues = queues.map_err(|e| page.fail("topics", e))?;
    let (queue_count, perm) = route
        .first()
        .map_or((DEFAULT_QUEUES, "rw".to_string()), |r| {
            (r.queues, r.perm.clone())
        });
    let chrome = page.chrome("topics");
    let html = render(&TopicPage {
        chrome: &chrome,
        name,
        href: topic_href(name),
        route: Table::of("route", &route, "No broker group hosts it.", |r| {
            Some(("broker", r.broker.clone()))
        }),
        queues: Table::of("queues", &queues, "No queue.", |q| {
            Some(("queue", format!("{}/{}", q.broker, q.queue)))
        }),
        queue_count,
        perms: PERMS.iter().map(|p| (*p, *p == perm)).collect(),
        outcome,
    })?;
    Ok((status, html).into_response())
}

#[derive(Clone, Default, Deserialize)]
struct SendForm {
    #[serde(default)]
    body: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    keys: String,
    /// The message group, for a FIFO topic.
    #[serde(default)]
    message_group: String,
    /// The priority, for a PRIORITY topic.
    #[serde(default)]
    priority: String,
    /// The lite topic, under a LITE parent topic.
    #[serde(default)]
    lite_topic: String,
}

/// A field left empty is none.
fn typed(field: &str) -> Option<String> {
    let field = field.trim();
    (!field.is_empty()).then(|| field.to_string())
}

impl SendForm {
    /// One message to `topic` with the form's body, tag (none when empty), keys (separated
    /// by commas or spaces) and the message group, priority or lite topic its topic's type
    /// asks for (at most one of them).
    fn spec(&self, topic: &str) -> Result<SendSpec, Failure> {
        let priority = typed(&self.priority)
            .map(|p| {
                p.parse::<u32>().map_err(|_| {
                    Failure::bad_request(format!("priority: {p:?} is not a number of 0 or more"))
                })
            })
            .transpose()?;
        let message_group = typed(&self.message_group);
        let lite_topic = typed(&self.lite_topic);
        let kinds = [
            priority.is_some(),
            message_group.is_some(),
            lite_topic.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(Failure::bad_request(
                "give at most one of message group (FIFO), priority (PRIORITY) and lite topic \
                 (LITE)",
            ));
        }
        Ok(SendSpec {
            topic: topic.to_string(),
            body: self.body.clone().into_bytes(),
            properties: Vec::new(),
            count: 1,
            tag: typed(&self.tag),
            keys: self
                .keys
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect(),
            priority,
            lite_topic,
            message_group,
        })
    }
}

/// Sends one test message through the client library, as `apogee send` does, signed as
/// the page's user; the page then shows its id.
async fn send_test(page: Page, Path(name): Path<String>, Form(f): Form<SendForm>) -> PageResult {
    let spec = f.spec(&name).map_err(|e| page.fail("topics", e))?;
    let (mut rows, error) = messaging::send(page.client_config(), &spec).await;
    if let Some(e) = error {
        return Err(page.fail("topics", e));
    }
    let sent = rows.pop().ok_or_else(|| {
        page.fail(
            "topics",
            Failure::new(StatusCode::BAD_GATEWAY, "no receipt"),
        )
    })?;
    tracing::info!(
        topic = name,
        id = sent.message_id,
        "console: test message sent"
    );
    let outcome = Outcome {
        sent: Some(sent),
        error: None,
        draft: f,
    };
    topic_page(&page, &name, StatusCode::OK, outcome).await
}

#[derive(Deserialize)]
struct UpdateForm {
    #[serde(default)]
    queues: String,
    #[serde(default)]
    perm: String,
}

/// Changes the queue count and/or permission (an empty field keeps what there is).
async fn update(page: Page, Path(name): Path<String>, Form(f): Form<UpdateForm>) -> PageResult {
    let fail = |e| page.fail("topics", e);
    let queues = queue_count(&f.queues, None).map_err(fail)?;
    let perm = match f.perm.trim() {
        "" => None,
        p => Some(Perm::parse(p).ok_or_else(|| {
            fail(Failure::bad_request(format!(
                "perm: {p:?} is not rw, r or w"
            )))
        })?),
    };
    page.admin()
        .update_topic(&name, queues, perm)
        .await
        .map_err(|e| page.fail("topics", e))?;
    tracing::info!(topic = name, ?queues, ?perm, "console: topic updated");
    Ok(Redirect::to(&topic_href(&name)).into_response())
}

#[derive(Deserialize)]
struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// Deletes the topic from every broker group once its name is typed to confirm; a wrong
/// name answers 400 with the page and what to type.
async fn delete(page: Page, Path(name): Path<String>, Form(f): Form<DeleteForm>) -> PageResult {
    if f.confirm.trim() != name {
        let outcome = Outcome {
            error: Some(format!(
                "not deleted: type the topic's name, {name}, to confirm"
            )),
            ..Outcome::default()
        };
        return topic_page(&page, &name, StatusCode::BAD_REQUEST, outcome).await;
    }
    page.admin()
        .delete_topic(&name)
        .await
        .map_err(|e| page.fail("topics", e))?;
    tracing::info!(topic = name, "console: topic deleted");
    Ok(Redirect::to(&format!("{}/topics", crate::BASE)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str) -> TopicInfo {
        TopicInfo {
            topic: name.to_string(),
            queues: 8,
            perm: "rw".into(),
            message_types: vec!["normal".into()],
            brokers: vec!["b".into()],
        }
    }

    fn names(l: &Listing) -> Vec<&str> {
        l.rows.iter().map(|t| t.topic.as_str()).collect()
    }

    #[test]
    fn the_list_filters_by_name_in_any_case_and_sorts() {
        let all = vec![topic("orders-b"), topic("Payments"), topic("ORDERS-a")];
        let l = listing(all, " orders ", 0);
        assert_eq!(names(&l), ["ORDERS-a", "orders-b"]);
        assert_eq!((l.matching, l.pages, l.page), (2, 1, 0));
    }

    #[test]
    fn the_list_shows_one_page_of_rows_and_clamps_past_the_end() {
        let all: Vec<TopicInfo> = (0..120).map(|i| topic(&format!("t{i:04}"))).collect();
        let second = listing(all.clone(), "", 1);
        assert_eq!(second.rows.len(), TOPICS_PER_PAGE);
        assert_eq!(second.rows[0].topic, "t0050");
        assert_eq!((second.pages, second.matching), (3, 120));
        let past = listing(all, "", 99);
        assert_eq!(past.page, 2);
        assert_eq!(names(&past).first(), Some(&"t0100"));
        assert_eq!(past.rows.len(), 20);
        let none = listing(Vec::new(), "x", 0);
        assert_eq!((none.pages, none.page, none.rows.len()), (1, 0, 0));
    }

    #[test]
    fn paging_links_keep_the_filter_and_the_system_switch() {
        assert_eq!(list_href("", false, 0), "/console/topics?page=0");
        assert_eq!(
            list_href("a b&c", true, 2),
            "/console/topics?page=2&filter=a%20b%26c&system=1"
        );
    }

    #[test]
    fn form_values_are_checked() {
        assert_eq!(queue_count(" 3 ", None).unwrap(), Some(3));
        assert_eq!(queue_count("", Some(8)).unwrap(), Some(8));
        assert_eq!(queue_count("", None).unwrap(), None);
        assert_eq!(
            queue_count("three", None).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(topic_type("FIFO").unwrap(), TopicType::Fifo);
        assert_eq!(topic_type("").unwrap(), TopicType::Normal);
        assert_eq!(
            topic_type("bogus").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_test_message_takes_the_tag_and_every_key() {
        let form = SendForm {
            body: "hi".into(),
            tag: " ".into(),
            keys: "k1, k2  k3".into(),
            ..SendForm::default()
        };
        let spec = form.spec("T").unwrap();
        assert_eq!(spec.tag, None);
        assert_eq!(spec.keys, ["k1", "k2", "k3"]);
        assert_eq!((spec.body.as_slice(), spec.count), (&b"hi"[..], 1));
        assert_eq!(
            (spec.priority, spec.lite_topic, spec.message_group),
            (None, None, None)
        );
        let tagged = SendForm {
            tag: "web".into(),
            ..form
        };
        assert_eq!(tagged.spec("T").unwrap().tag.as_deref(), Some("web"));
    }

    #[test]
    fn a_test_message_takes_one_of_group_priority_and_lite_topic() {
        let with = |group: &str, priority: &str, lite: &str| SendForm {
            message_group: group.into(),
            priority: priority.into(),
            lite_topic: lite.into(),
            ..SendForm::default()
        };
        let fifo = with(" g-1 ", "", "").spec("T").unwrap();
        assert_eq!(fifo.message_group.as_deref(), Some("g-1"));
        assert_eq!(with("", "7", "").spec("T").unwrap().priority, Some(7));
        let lite = with("", "", "s-1").spec("T").unwrap();
        assert_eq!(lite.lite_topic.as_deref(), Some("s-1"));
        for bad in [
            with("", "-1", ""),
            with("", "high", ""),
            with("g", "1", ""),
            with("g", "", "s"),
        ] {
            assert_eq!(bad.spec("T").unwrap_err().status, StatusCode::BAD_REQUEST);
        }
    }
}
