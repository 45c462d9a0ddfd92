//! The messages pages: a search by message id (`apogee message get`), by topic and key
//! (`apogee message find`) or a range of one queue (`apogee message print`), and a message's
//! page: every attribute and user property, its body (text when it is UTF-8, else hex, cut
//! at [`BODY_SHOWN_BYTES`] with a note), and the consumer groups holding it in flight with
//! their delivery attempts so far (what the admin API reports per group).

use crate::page::{encode, render, Chrome, Failure, Page, PageResult};
use crate::pages::{Cell, Row, Table};
use crate::Console;
use apogee_admin::error::ToolError;
use apogee_admin::message_query::{empty_queue_note, rfc3339, MessageRow, QueueRead};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use std::sync::Arc;

/// Bytes of a body a message's page shows; the rest is cut, and the page says how much.
pub const BODY_SHOWN_BYTES: usize = 64 * 1024;
/// Messages a search by key returns at most per broker group (`apogee message find`'s
/// default).
const FIND_LIMIT: u32 = 64;
/// Messages a queue read returns (`apogee message print`'s default).
const QUEUE_READ_COUNT: u32 = 32;

pub fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/messages", get(search))
        .route("/messages/view", get(view))
}

/// The address of a message's page.
pub fn message_href(topic: &str, id: &str) -> String {
    format!(
        "{}/messages/view?topic={}&id={}",
        crate::BASE,
        encode(topic),
        encode(id)
    )
}

/// The search form's fields, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    key: String,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    offset: String,
}

/// What the search asks for.
#[derive(Debug, PartialEq)]
enum Search {
    Id(String),
    Key {
        topic: String,
        key: String,
    },
    Queue {
        topic: String,
        queue: u32,
        from: u64,
    },
}

impl SearchQuery {
    /// The search the fields ask for (none when they are all empty): an id alone, or a
    /// topic with a key, or a topic with a queue (and a first offset, 0 when empty).
    fn search(&self) -> Result<Option<Search>, String> {
        let (id, topic, key) = (self.id.trim(), self.topic.trim(), self.key.trim());
        let (queue, offset) = (self.queue.trim(), self.offset.trim());
        if !id.is_empty() {
            return Ok(Some(Search::Id(id.to_string())));
        }
        if topic.is_empty() {
            if key.is_empty() && queue.is_empty() && offset.is_empty() {
                return Ok(None);
            }
            return Err("give the topic to search by key or by queue".into());
        }
        if !key.is_empty() {
            return Ok(Some(Search::Key {
                topic: topic.to_string(),
                key: key.to_string(),
            }));
        }
        if queue.is_empty() {
            return Err("with a topic, give a key or a queue".into());
        }
        let queue = queue
            .parse()
            .map_err(|_| format!("queue: {queue:?} is not a queue id"))?;
        let from = if offset.is_empty() {
            0
        } else {
            offset
                .parse()
                .map_err(|_| format!("offset: {offset:?} is not an offset"))?
        };
        Ok(Some(Search::Queue {
            topic: topic.to_string(),
            queue,
            from,
        }))
    }
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage<'a> {
    chrome: &'a Chrome,
    q: &'a SearchQuery,
    /// None before a search.
    messages: Option<Table>,
    note: Option<String>,
}

async fn search(page: Page, Query(q): Query<SearchQuery>) -> PageResult {
    let fail = |e: ToolError| page.fail("messages", e);
    let wanted = q
        .search()
        .map_err(|e| page.fail("messages", Failure::bad_request(e)))?;
    let admin = page.admin();
    let (rows, note) = match wanted {
        None => (None, None),
        Some(Search::Id(id)) => (Some(admin.get_message(&id).await.map_err(fail)?), None),
        Some(Search::Key { topic, key }) => {
            let rows = admin.find_messages(&topic, &key, FIND_LIMIT).await;
            (Some(rows.map_err(fail)?), None)
        }
        Some(Search::Queue { topic, queue, from }) => {
            let args = QueueRead {
                topic,
                queue,
                from,
                count: QUEUE_READ_COUNT,
                broker: None,
            };
            let (rows, bounds) = admin.read_queue(&args).await.map_err(fail)?;
            let note = rows
                .is_empty()
                .then(|| empty_queue_note(&args.topic, queue, &bounds));
            (Some(rows), note)
        }
    };
    let chrome = page.chrome("messages");
    let html = render(&MessagesPage {
        chrome: &chrome,
        q: &q,
        messages: rows.as_deref().map(messages_table),
        note,
    })?;
    Ok(html.into_response())
}

/// The CLI's message rows, each id linking to the message's page.
fn messages_table(rows: &[MessageRow]) -> Table {
    let mut table = Table::of("messages", rows, "No message found.", |r| {
        Some(("message-id", r.message_id.clone()))
    });
    for (row, message) in table.rows.iter_mut().zip(rows) {
        if let Some(cell) = row.cells.first_mut() {
            cell.href = Some(message_href(&message.topic, &message.message_id));
        }
    }
    table
}

#[derive(Deserialize)]
struct ViewQuery {
    #[serde(default)]
    topic: String,
    id: String,
}

/// A body as a page shows it (`templates/body.html`: a message's, a dead letter's).
#[derive(Debug, PartialEq)]
pub struct ShownBody {
    pub text: String,
    pub hex: bool,
    /// What was cut, when the body is larger than [`BODY_SHOWN_BYTES`].
    pub cut: Option<String>,
    /// The limit ([`BODY_SHOWN_BYTES`]), as the page states it.
    pub limit: String,
}

impl ShownBody {
    /// `body` as `message_query::body_text` gives it (text, or hex when `hex`: the body was
    /// not UTF-8) of a body of `size` bytes, at most [`BODY_SHOWN_BYTES`] of it; `whole` says
    /// where to get all of it.
    pub fn new(body: &str, hex: bool, size: usize, whole: &str) -> ShownBody {
        let shown_bytes = size.min(BODY_SHOWN_BYTES);
        let text = if hex {
            body[..(2 * shown_bytes).min(body.len())].to_string()
        } else {
            let mut end = shown_bytes.min(body.len());
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body[..end].to_string()
        };
        let shown = if hex { text.len() / 2 } else { text.len() };
        let cut = (shown < size).then(|| {
            format!(
                "Showing the first {shown} of {size} bytes: {} bytes not shown ({whole} prints it all).",
                size - shown
            )
        });
        ShownBody {
            text,
            hex,
            cut,
            limit: format!("{} KiB", BODY_SHOWN_BYTES / 1024),
        }
    }
}

/// The row's body, at most [`BODY_SHOWN_BYTES`] of it.
fn shown_body(row: &MessageRow) -> ShownBody {
    ShownBody::new(
        &row.body,
        row.body_format == "hex",
        row.body_size,
        "apogee message get -o json",
    )
}

/// Every attribute of the message, then its user properties.
fn properties(r: &MessageRow) -> Vec<(String, String)> {
    let or_dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("-").to_string();
    let mut all: Vec<(String, String)> = [
        ("Message id", r.message_id.clone()),
        ("Topic", r.topic.clone()),
        ("Broker", r.broker.clone()),
        ("Queue", r.queue_id.to_string()),
        ("Queue offset", r.queue_offset.to_string()),
        ("Commit log offset", r.log_offset.to_string()),
        ("Type", r.message_type.clone()),
        ("Tag", or_dash(r.tag.as_deref())),
        ("Keys", or_dash(Some(&r.keys.join(", ")))),
        ("Message group", or_dash(r.message_group.as_deref())),
        ("Stored", r.store_time.clone()),
        ("Born", rfc3339(r.born_timestamp_ms)),
        ("Born host", or_dash(Some(&r.born_host))),
        (
            "Delivery time",
            r.delivery_timestamp_ms.map_or("-".into(), rfc3339),
        ),
        ("Body encoding", r.body_encoding.clone()),
        ("Body size", format!("{} bytes", r.body_size)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    all.extend(
        r.properties
            .iter()
            .map(|(k, v)| (format!("Property {k}"), v.clone())),
    );
    all
}

/// The groups holding the message in flight and their delivery attempts so far.
fn deliveries(r: &MessageRow) -> Table {
    let mut table = Table::new(
        "deliveries",
        vec!["GROUP".into(), "ATTEMPTS".into()],
        "No consumer group holds it in flight now.",
    );
    for (group, attempts) in &r.delivery_attempts {
        table.rows.push(Row {
            key: Some(("group", group.clone())),
            cells: vec![
                Cell::from(group.clone()),
                Cell::from(attempts.to_string()).with_class("num"),
            ],
        });
    }
    table
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    chrome: &'a Chrome,
    row: &'a MessageRow,
    topic_href: String,
    properties: Vec<(String, String)>,
    body: ShownBody,
    deliveries: Table,
}

async fn view(page: Page, Query(q): Query<ViewQuery>) -> PageResult {
    let rows = page
        .admin()
        .get_message(&q.id)
        .await
        .map_err(|e| page.fail("messages", e))?;
    let topic = q.topic.trim();
    let Some(row) = rows.iter().find(|r| topic.is_empty() || r.topic == topic) else {
        let why = format!("no message {} in topic {topic}", q.id.trim());
        return Err(page.fail("messages", Failure::new(StatusCode::NOT_FOUND, why)));
    };
    let chrome = page.chrome("messages");
    let html = render(&MessagePage {
        chrome: &chrome,
        row,
        topic_href: crate::pages::topics::topic_href(&row.topic),
        properties: properties(row),
        body: shown_body(row),
        deliveries: deliveries(row),
    })?;
    Ok(html.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::cluster;

    fn query(id: &str, topic: &str, key: &str, queue: &str, offset: &str) -> SearchQuery {
        SearchQuery {
            id: id.into(),
            topic: topic.into(),
            key: key.into(),
            queue: queue.into(),
            offset: offset.into(),
        }
    }

    #[test]
    fn the_search_is_by_id_by_key_or_by_queue() {
        assert_eq!(query("", "", "", "", "").search(), Ok(None));
        assert_eq!(
            query(" M1 ", "T", "k", "", "").search(),
            Ok(Some(Search::Id("M1".into())))
        );
        assert_eq!(
            query("", "T", "k", "2", "").search(),
            Ok(Some(Search::Key {
                topic: "T".into(),
                key: "k".into()
            }))
        );
        assert_eq!(
            query("", "T", "", "2", "").search(),
            Ok(Some(Search::Queue {
                topic: "T".into(),
                queue: 2,
                from: 0
            }))
        );
        assert_eq!(
            query("", "T", "", "2", "40").search(),
            Ok(Some(Search::Queue {
                topic: "T".into(),
                queue: 2,
                from: 40
            }))
        );
    }

    #[test]
    fn an_incomplete_or_malformed_search_is_refused() {
        assert!(query("", "", "k", "", "").search().is_err());
        assert!(query("", "T", "", "", "").search().is_err());
        assert!(query("", "T", "", "x", "").search().is_err());
        assert!(query("", "T", "", "1", "-3").search().is_err());
    }

    fn row(body: &[u8]) -> MessageRow {
        MessageRow::from(&cluster::MessageView {
            topic: "T".into(),
            message_id: "M1".into(),
            body: body.to_vec(),
            user_properties: [("region".to_string(), "eu".to_string())]
                .into_iter()
                .collect(),
            delivery_attempts: vec![cluster::GroupAttempts {
                group: "G".into(),
                attempts: 3,
            }],
            ..Default::default()
        })
    }

    #[test]
    fn a_text_body_is_shown_whole_when_small() {
        let b = shown_body(&row("héllo <b>".as_bytes()));
        assert_eq!(
            b,
            ShownBody {
                text: "héllo <b>".into(),
                hex: false,
                cut: None,
                limit: "64 KiB".into(),
            }
        );
    }

    #[test]
    fn a_binary_body_is_hex_and_a_large_one_is_cut_with_a_note() {
        let small = shown_body(&row(&[0xff, 0x00]));
        assert_eq!((small.text.as_str(), small.hex), ("ff00", true));
        let big = shown_body(&row(&vec![0xfe; BODY_SHOWN_BYTES + 10]));
        assert!(big.hex);
        assert_eq!(big.text.len(), 2 * BODY_SHOWN_BYTES);
        let note = big.cut.unwrap();
        assert!(note.contains("10 bytes not shown"), "{note}");
    }

    #[test]
    fn a_large_text_body_is_cut_on_a_character_boundary() {
        let mut body = "a".repeat(BODY_SHOWN_BYTES - 1);
        body.push('é');
        body.push_str("tail");
        let b = shown_body(&row(body.as_bytes()));
        assert!(!b.hex);
        assert_eq!(b.text.len(), BODY_SHOWN_BYTES - 1);
        assert!(b.cut.unwrap().contains("6 bytes not shown"));
    }

    #[test]
    fn the_page_lists_every_property_and_the_attempts_per_group() {
        let r = row(b"x");
        let props = properties(&r);
        assert!(props.contains(&("Property region".into(), "eu".into())));
        assert!(props.contains(&("Message id".into(), "M1".into())));
        assert!(props.contains(&("Tag".into(), "-".into())));
        let d = deliveries(&r);
        assert_eq!(d.rows.len(), 1);
        assert_eq!(d.rows[0].cells[0].text, "G");
        assert_eq!(d.rows[0].cells[1].text, "3");
    }

    #[test]
    fn result_rows_link_to_the_message_in_its_topic() {
        let t = messages_table(&[row(b"x")]);
        assert_eq!(t.rows[0].key, Some(("message-id", "M1".to_string())));
        assert_eq!(
            t.rows[0].cells[0].href.as_deref(),
            Some("/console/messages/view?topic=T&id=M1")
        );
    }
}
