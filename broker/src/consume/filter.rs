//! Subscription filters. Tag expressions (`*`, `TagA`, `TagA || TagB`) are
//! supported; SQL92 filters are refused with ILLEGAL_FILTER_EXPRESSION
//! rather than ignored.

use crate::store::tag_hash;
use apogee_proto::v2::{FilterExpression, FilterType};
use apogee_proto::ApogeeError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagFilter {
    All,
    /// Any of these tags, with their hashes for the consume-queue pre-check.
    AnyOf(Vec<(String, u64)>),
}

impl TagFilter {
    pub fn from_expression(e: Option<&FilterExpression>) -> Result<TagFilter, ApogeeError> {
        let Some(e) = e else {
            return Ok(TagFilter::All);
        };
        if e.r#type == FilterType::Sql as i32 {
            return Err(ApogeeError::IllegalFilterExpression(
                "SQL92 filter expressions are not supported; use tag expressions".into(),
            ));
        }
        Self::parse(&e.expression)
    }

    pub fn parse(text: &str) -> Result<TagFilter, ApogeeError> {
        let text = text.trim();
        if text.is_empty() || text == "*" {
            return Ok(TagFilter::All);
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
                return Ok(TagFilter::All);
            }
            tags.push((t.to_string(), tag_hash(t)));
        }
        Ok(TagFilter::AnyOf(tags))
    }

    /// Cheap check on a consume-queue entry's tag hash (may say yes wrongly
    /// on a hash collision; `matches` decides).
    pub fn may_match_hash(&self, hash: u64) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::AnyOf(tags) => tags.iter().any(|(_, h)| *h == hash),
        }
    }

    pub fn matches(&self, tag: Option<&str>) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::AnyOf(tags) => tag.is_some_and(|t| tags.iter().any(|(name, _)| name == t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_parse() {
        assert_eq!(TagFilter::parse("*").unwrap(), TagFilter::All);
        assert_eq!(TagFilter::parse("").unwrap(), TagFilter::All);
        let f = TagFilter::parse("A || B").unwrap();
        assert!(f.matches(Some("A")) && f.matches(Some("B")));
        assert!(!f.matches(Some("C")) && !f.matches(None));
        assert!(f.may_match_hash(tag_hash("B")));
        assert!(TagFilter::parse("A || ").is_err());
    }

    #[test]
    fn sql_filters_are_refused() {
        let e = FilterExpression {
            r#type: FilterType::Sql as i32,
            expression: "a > 1".into(),
        };
        assert_eq!(
            TagFilter::from_expression(Some(&e)).unwrap_err().code() as i32,
            40010
        );
    }
}
