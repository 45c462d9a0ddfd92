//! Subscription filters, evaluated on the broker: what a consumer group
//! receives of a topic.
//!
//! - Tag expressions (`*`, `TagA`, `TagA || TagB`): the consume-queue entry's
//!   tag hash rules most messages out before their record is read.
//! - SQL92 property filters (`a > 5 AND b = 'x'`, `TAGS IN ('A', 'B')` ...):
//!   [`sql`] parses them, [`eval`] evaluates them on each message's user
//!   properties and tag. A malformed one (or one longer than
//!   [`MAX_EXPRESSION_LEN`]) is refused with ILLEGAL_FILTER_EXPRESSION.

mod eval;
mod lexer;
mod like;
pub mod sql;
#[cfg(test)]
mod tests;

use crate::store::{tag_hash, NewMessage};
use apogee_proto::v2::{FilterExpression, FilterType};
use apogee_proto::ApogeeError;
use std::sync::Arc;

/// Longest SQL92 filter expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;

/// What a consumer group receives of a topic.
#[derive(Clone, Debug, PartialEq)]
pub enum MessageFilter {
    All,
    /// Any of these tags, with their hashes for the consume-queue pre-check.
    Tags(Vec<(String, u64)>),
    Sql(Arc<SqlFilter>),
}

impl MessageFilter {
    /// The filter a request asks for: none means everything; TAG (or an
    /// unspecified type) a tag expression; SQL a SQL92 filter.
    pub fn from_expression(e: Option<&FilterExpression>) -> Result<MessageFilter, ApogeeError> {
        let Some(e) = e else {
            return Ok(MessageFilter::All);
        };
        match FilterType::try_from(e.r#type) {
            Ok(FilterType::Sql) => Ok(MessageFilter::Sql(Arc::new(SqlFilter::parse(
                &e.expression,
            )?))),
            Ok(FilterType::Tag | FilterType::Unspecified) => Self::parse_tags(&e.expression),
            Err(_) => Err(ApogeeError::IllegalFilterExpression(format!(
                "unknown filter type {}",
                e.r#type
            ))),
        }
    }

    /// A tag expression: `*` (or empty) for all, else tags joined by `||`.
    pub fn parse_tags(text: &str) -> Result<MessageFilter, ApogeeError> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(MessageFilter::All);
        }
        let mut tags = Vec::new();
        for t in text.split("||") {
            let t = t.trim();
            if t.is_empty() {
                return Err(ApogeeError::IllegalFilterExpression(format!(
                    "empty tag in {text:?}"
                )));
            }
            if t == "*" {
                return Ok(MessageFilter::All);
            }
            tags.push((t.to_string(), tag_hash(t)));
        }
        Ok(MessageFilter::Tags(tags))
    }

    /// Cheap check on a consume-queue entry's tag hash (may say yes wrongly
    /// on a hash collision, and always does for SQL; `matches` decides).
    pub fn may_match_hash(&self, hash: u64) -> bool {
        match self {
            MessageFilter::All | MessageFilter::Sql(_) => true,
            MessageFilter::Tags(tags) => tags.iter().any(|(_, h)| *h == hash),
        }
    }

    /// Whether the group receives `msg`.
    pub fn matches(&self, msg: &NewMessage) -> bool {
        match self {
            MessageFilter::All => true,
            MessageFilter::Tags(tags) => msg
                .tag
                .as_deref()
                .is_some_and(|t| tags.iter().any(|(name, _)| name == t)),
            MessageFilter::Sql(f) => f.matches(msg.tag.as_deref(), &msg.properties),
        }
    }
}

/// A parsed SQL92 filter.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlFilter {
    text: String,
    expr: sql::Expr,
}

impl SqlFilter {
    pub fn parse(text: &str) -> Result<SqlFilter, ApogeeError> {
        let illegal =
            |m: String| ApogeeError::IllegalFilterExpression(format!("SQL92 filter: {m}"));
        if text.len() > MAX_EXPRESSION_LEN {
            return Err(illegal(format!(
                "the expression is {} bytes long; at most {MAX_EXPRESSION_LEN} are allowed",
                text.len()
            )));
        }
        let expr = sql::parse(text).map_err(illegal)?;
        Ok(SqlFilter {
            text: text.to_string(),
            expr,
        })
    }

    /// The expression as the consumer wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// True only when the filter is true for this tag and these user
    /// properties (false or unknown, e.g. a missing property, is no match).
    pub fn matches(&self, tag: Option<&str>, properties: &[(String, String)]) -> bool {
        let cx = eval::Context { tag, properties };
        eval::eval(&self.expr, &cx) == Some(true)
    }
}
