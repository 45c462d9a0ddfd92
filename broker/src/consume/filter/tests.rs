//! Filter tests: tag expressions, and SQL92 parsing and evaluation (each
//! operator, precedence, NULL semantics, refusals).

use super::*;
use apogee_proto::v2::Code;

fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sql(text: &str) -> SqlFilter {
    SqlFilter::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

/// Whether `text` matches a message with these properties and no tag.
fn eval(text: &str, pairs: &[(&str, &str)]) -> bool {
    sql(text).matches(None, &props(pairs))
}

/// The error message for an expression that must be refused.
fn refused(text: &str) -> String {
    match SqlFilter::parse(text) {
        Ok(f) => panic!("{text:?} should be refused, parsed as {f:?}"),
        Err(e) => {
            assert_eq!(e.code(), Code::IllegalFilterExpression, "{text:?}");
            e.to_string()
        }
    }
}

fn message(tag: Option<&str>, pairs: &[(&str, &str)]) -> NewMessage {
    let mut m = NewMessage::op_record("t", Vec::new());
    m.tag = tag.map(str::to_string);
    m.properties = props(pairs);
    m
}

#[test]
fn tag_expressions_parse() {
    assert_eq!(MessageFilter::parse_tags("*").unwrap(), MessageFilter::All);
    assert_eq!(MessageFilter::parse_tags("").unwrap(), MessageFilter::All);
    assert_eq!(
        MessageFilter::parse_tags("A || *").unwrap(),
        MessageFilter::All
    );
    let f = MessageFilter::parse_tags("A || B").unwrap();
    assert!(f.matches(&message(Some("A"), &[])) && f.matches(&message(Some("B"), &[])));
    assert!(!f.matches(&message(Some("C"), &[])) && !f.matches(&message(None, &[])));
    assert!(f.may_match_hash(tag_hash("B")));
    assert!(!f.may_match_hash(tag_hash("C")));
    assert!(MessageFilter::parse_tags("A || ").is_err());
}

#[test]
fn from_expression_picks_the_kind() {
    let expr = |t: FilterType, e: &str| FilterExpression {
        r#type: t as i32,
        expression: e.into(),
    };
    assert_eq!(
        MessageFilter::from_expression(None).unwrap(),
        MessageFilter::All
    );
    assert!(matches!(
        MessageFilter::from_expression(Some(&expr(FilterType::Tag, "A"))).unwrap(),
        MessageFilter::Tags(_)
    ));
    assert!(matches!(
        MessageFilter::from_expression(Some(&expr(FilterType::Unspecified, "A"))).unwrap(),
        MessageFilter::Tags(_)
    ));
    let f = MessageFilter::from_expression(Some(&expr(FilterType::Sql, "a > 1"))).unwrap();
    assert!(f.may_match_hash(tag_hash("anything")));
    assert!(f.matches(&message(None, &[("a", "2")])));
    assert!(!f.matches(&message(None, &[("a", "1")])));
    let bad = MessageFilter::from_expression(Some(&expr(FilterType::Sql, "a >"))).unwrap_err();
    assert_eq!(bad.code() as i32, 40010);
    let unknown = FilterExpression {
        r#type: 9,
        expression: "a".into(),
    };
    assert_eq!(
        MessageFilter::from_expression(Some(&unknown))
            .unwrap_err()
            .code(),
        Code::IllegalFilterExpression
    );
}

#[test]
fn numeric_comparisons() {
    let p = [("a", "5")];
    for (text, want) in [
        ("a = 5", true),
        ("a = 5.0", true),
        ("a <> 5", false),
        ("a != 4", true),
        ("a < 6", true),
        ("a < 5", false),
        ("a <= 5", true),
        ("a > 4.5", true),
        ("a > 5", false),
        ("a >= 5", true),
        ("a >= 5.5", false),
        ("a > -1", true),
        ("-10 < a", true),
        ("5 = a", true),
    ] {
        assert_eq!(eval(text, &p), want, "{text}");
    }
    assert!(eval("x > 1.25", &[("x", "1.5")]));
    assert!(eval("x < 0", &[("x", "-2e3")]));
    assert!(eval("x = 9007199254740993", &[("x", "9007199254740993")]));
    assert!(!eval("x = 9007199254740992", &[("x", "9007199254740993")]));
}

#[test]
fn string_comparisons() {
    let p = [("b", "x"), ("c", "x"), ("d", "it's")];
    assert!(eval("b = 'x'", &p));
    assert!(!eval("b = 'X'", &p));
    assert!(eval("b <> 'y'", &p));
    assert!(eval("b != 'y'", &p));
    assert!(eval("'x' = b", &p));
    assert!(eval("b = c", &p));
    assert!(eval("d = 'it''s'", &p));
    // Text that is no number never equals (or differs from) a number.
    assert!(!eval("b = 5", &p));
    assert!(!eval("b <> 5", &p));
    assert!(!eval("b > 5", &p));
    // Property against property orders as numbers.
    assert!(eval("lo < hi", &[("lo", "9"), ("hi", "10")]));
    assert!(!eval("lo < hi", &[("lo", "a"), ("hi", "b")]));
}

#[test]
fn booleans() {
    assert!(eval("TRUE", &[]));
    assert!(!eval("FALSE", &[]));
    assert!(eval("NOT FALSE", &[]));
    assert!(eval("flag = TRUE", &[("flag", "true")]));
    assert!(eval("flag = true", &[("flag", "TRUE")]));
    assert!(eval("flag = FALSE", &[("flag", "false")]));
    assert!(!eval("flag = TRUE", &[("flag", "yes")]));
    assert!(!eval("flag <> TRUE", &[("flag", "yes")]));
    assert!(eval("flag", &[("flag", "true")]));
    assert!(!eval("flag", &[("flag", "false")]));
    assert!(eval("NOT flag", &[("flag", "false")]));
    assert!(!eval("flag", &[]));
    assert!(!eval("NOT flag", &[]));
}

#[test]
fn and_or_not_and_precedence() {
    let p = [("a", "1"), ("b", "2")];
    assert!(eval("a = 1 AND b = 2", &p));
    assert!(!eval("a = 1 AND b = 3", &p));
    assert!(eval("a = 9 OR b = 2", &p));
    assert!(!eval("a = 9 OR b = 9", &p));
    assert!(eval("NOT a = 9", &p));
    assert!(!eval("NOT a = 1", &p));
    // AND binds tighter than OR; NOT tighter than AND.
    assert!(eval("a = 9 AND b = 9 OR a = 1", &p));
    assert!(!eval("a = 9 AND (b = 9 OR a = 1)", &p));
    assert!(eval("a = 1 OR a = 9 AND b = 9", &p));
    assert!(!eval("(a = 1 OR a = 9) AND b = 9", &p));
    assert!(eval("NOT a = 9 AND b = 2", &p));
    assert!(!eval("NOT (a = 1 AND b = 2)", &p));
    assert!(eval("NOT NOT a = 1", &p));
    assert!(eval("((((a = 1))))", &p));
    assert!(eval("a = 1 and b = 2 or FALSE", &p));
}

#[test]
fn missing_properties_are_null() {
    let none: [(&str, &str); 0] = [];
    for text in [
        "a = 1",
        "a <> 1",
        "NOT (a = 1)",
        "a > 1",
        "a <= 1",
        "a BETWEEN 1 AND 2",
        "a NOT BETWEEN 1 AND 2",
        "a IN ('x')",
        "a NOT IN ('x')",
        "a LIKE '%'",
        "a NOT LIKE 'x'",
        "a CONTAINS ''",
        "a = b",
        "TAGS = 'A'",
    ] {
        assert!(
            !eval(text, &none),
            "{text} matched a message without the property"
        );
    }
    assert!(eval("a IS NULL", &none));
    assert!(!eval("a IS NOT NULL", &none));
    assert!(!eval("a IS NULL", &[("a", "")]));
    assert!(eval("a IS NOT NULL", &[("a", "")]));
    // Unknown OR true is true; unknown AND false is false; NOT keeps unknown.
    assert!(eval("a = 1 OR b = 2", &[("b", "2")]));
    assert!(eval("b = 2 OR a = 1", &[("b", "2")]));
    assert!(!eval("a = 1 AND b = 2", &[("b", "2")]));
    assert!(eval("NOT (a = 1 AND b = 3)", &[("b", "2")]));
    assert!(!eval("NOT (a = 1 OR b = 3)", &[("b", "2")]));
    assert!(eval("a IS NULL OR a > 3", &[]));
}

#[test]
fn between() {
    assert!(eval("a BETWEEN 1 AND 3", &[("a", "1")]));
    assert!(eval("a BETWEEN 1 AND 3", &[("a", "3")]));
    assert!(eval("a BETWEEN 1 AND 3", &[("a", "2.5")]));
    assert!(!eval("a BETWEEN 1 AND 3", &[("a", "4")]));
    assert!(eval("a NOT BETWEEN 1 AND 3", &[("a", "4")]));
    assert!(!eval("a NOT BETWEEN 1 AND 3", &[("a", "2")]));
    assert!(eval("a BETWEEN -2.5 AND -1", &[("a", "-2")]));
    assert!(!eval("a BETWEEN 1 AND 3", &[("a", "two")]));
    assert!(!eval("a NOT BETWEEN 1 AND 3", &[("a", "two")]));
    // BETWEEN's AND does not end the condition early.
    assert!(eval(
        "a BETWEEN 1 AND 3 AND b = 'x'",
        &[("a", "2"), ("b", "x")]
    ));
}

#[test]
fn in_lists() {
    let p = [("c", "red")];
    assert!(eval("c IN ('red', 'green')", &p));
    assert!(!eval("c IN ('blue', 'green')", &p));
    assert!(eval("c NOT IN ('blue', 'green')", &p));
    assert!(!eval("c NOT IN ('red')", &p));
    assert!(eval("n IN (1, 2, 3)", &[("n", "2")]));
    assert!(!eval("n IN (1, 3)", &[("n", "2")]));
    assert!(!eval("TAGS IN ('A', 'B')", &[]));
    assert!(sql("TAGS IN ('A', 'B')").matches(Some("B"), &[]));
}

#[test]
fn like_and_text_operators() {
    let p = [("s", "order-42_x")];
    assert!(eval("s LIKE 'order-%'", &p));
    assert!(eval("s LIKE '%42%'", &p));
    assert!(eval("s LIKE 'order-__\\_x' ESCAPE '\\'", &p));
    assert!(eval("s LIKE 'order-___x'", &p));
    assert!(!eval("s LIKE 'order-4\\_\\_x' ESCAPE '\\'", &p));
    assert!(!eval("s LIKE 'order'", &p));
    assert!(eval("s NOT LIKE 'x%'", &p));
    assert!(!eval("s NOT LIKE 'o%'", &p));
    assert!(eval("s CONTAINS '42'", &p));
    assert!(eval("s NOT CONTAINS '43'", &p));
    assert!(eval("s STARTSWITH 'order'", &p));
    assert!(eval("s ENDSWITH '_x'", &p));
    assert!(!eval("s ENDSWITH 'order'", &p));
}

#[test]
fn tags_is_the_message_tag() {
    let f = sql("TAGS = 'A' AND a > 1");
    assert!(f.matches(Some("A"), &props(&[("a", "2")])));
    assert!(!f.matches(Some("B"), &props(&[("a", "2")])));
    assert!(!f.matches(None, &props(&[("a", "2"), ("TAGS", "A")])));
    assert!(sql("TAGS IS NULL").matches(None, &[]));
    // Identifiers are case-sensitive: `tags` is an ordinary property.
    assert!(!sql("tags = 'A'").matches(Some("A"), &[]));
}

#[test]
fn message_filter_sql_reads_the_message() {
    let f = MessageFilter::Sql(Arc::new(sql("region = 'eu' AND TAGS = 'T'")));
    assert!(f.matches(&message(Some("T"), &[("region", "eu")])));
    assert!(!f.matches(&message(Some("T"), &[("region", "us")])));
    assert!(!f.matches(&message(None, &[("region", "eu")])));
}

#[test]
fn malformed_expressions_are_refused() {
    for (text, says) in [
        ("", "empty"),
        ("   ", "empty"),
        ("a >", "found the end"),
        ("a = 1 AND", "found the end"),
        ("a = 1 b = 2", "unexpected identifier b"),
        ("(a = 1", "expected ')'"),
        ("a = 1)", "unexpected ')'"),
        ("a = 'open", "unterminated string"),
        ("a == 1", "unknown operator '=='"),
        ("a && b", "unknown operator '&&'"),
        ("a + 1 > 2", "unknown operator '+'"),
        ("a ! b", "unknown operator '!'"),
        ("a = NULL", "use IS NULL"),
        ("a IS 5", "expected NULL"),
        ("a > 'x'", "cannot be ordered"),
        ("'x' < 5", "cannot be ordered"),
        ("a <= TRUE", "cannot be ordered"),
        ("a BETWEEN 'a' AND 'z'", "a number after BETWEEN"),
        ("a BETWEEN 1 OR 2", "expected AND"),
        ("'a' BETWEEN 1 AND 2", "cannot be ordered"),
        ("a IN ()", "expected a literal"),
        ("a IN (b)", "expected a literal"),
        ("a IN ('x' 'y')", "expected ',' or ')'"),
        ("a IN 'x'", "'(' after IN"),
        ("a LIKE 5", "a string pattern"),
        ("a LIKE 'x!' ESCAPE '!'", "escape character"),
        ("a LIKE 'x' ESCAPE 'ab'", "one character"),
        ("5", "not a condition"),
        ("'x'", "not a condition"),
        ("a NOT = 1", "unexpected NOT"),
        ("a = -", "a number after '-'"),
        ("AND", "a property, a literal"),
        ("a = 1 OR OR a = 2", "a property, a literal"),
        ("a = 12abc", "malformed number"),
        ("a = \"x\"", "single quotes"),
    ] {
        let e = refused(text);
        assert!(
            e.contains(says),
            "{text:?}: error {e:?} should say {says:?}"
        );
    }
}

#[test]
fn errors_name_the_column() {
    assert!(refused("a = 1 AND b >").contains("column 14"));
    assert!(refused("a = 1 AND (b = 2").contains("column 17"));
    assert!(refused("a = 1 # 2").contains("column 7"));
}

#[test]
fn length_and_depth_are_limited() {
    // Just at the limit: accepted.
    let mut at_limit = String::from("a = 'x'");
    while at_limit.len() + " OR a = 'x'".len() <= MAX_EXPRESSION_LEN {
        at_limit.push_str(" OR a = 'x'");
    }
    at_limit.push_str(&" ".repeat(MAX_EXPRESSION_LEN - at_limit.len()));
    assert_eq!(at_limit.len(), MAX_EXPRESSION_LEN);
    assert!(sql(&at_limit).matches(None, &props(&[("a", "x")])));
    // One byte over: refused, saying why.
    let over = format!("{at_limit} ");
    assert!(refused(&over).contains("at most 4096"));
    // Deep nesting is refused; the allowed depth works.
    let deep = |n: usize| format!("{}a = 1{}", "(".repeat(n), ")".repeat(n));
    assert!(eval(&deep(sql::MAX_DEPTH), &[("a", "1")]));
    assert!(refused(&deep(sql::MAX_DEPTH + 1)).contains("nesting"));
    let nots = |n: usize| format!("{}a = 1", "NOT ".repeat(n));
    assert!(eval(&nots(sql::MAX_DEPTH), &[("a", "1")]));
    assert!(refused(&nots(sql::MAX_DEPTH + 1)).contains("nesting"));
    // A long flat chain stays flat (no deep recursion when evaluated or dropped).
    let chain = vec!["a = 1"; 400].join(" AND ");
    assert!(eval(&chain, &[("a", "1")]));
}

#[test]
fn a_realistic_filter() {
    let f = sql("(region IN ('eu', 'us') AND amount >= 100.5) \
         OR (vip = TRUE AND name LIKE 'A%' AND code IS NOT NULL) \
         OR TAGS = 'urgent'");
    assert!(f.matches(None, &props(&[("region", "eu"), ("amount", "200")])));
    assert!(!f.matches(None, &props(&[("region", "eu"), ("amount", "100")])));
    assert!(!f.matches(None, &props(&[("region", "asia"), ("amount", "500")])));
    assert!(f.matches(
        None,
        &props(&[("vip", "true"), ("name", "Ada"), ("code", "7")])
    ));
    assert!(!f.matches(None, &props(&[("vip", "true"), ("name", "Ada")])));
    assert!(f.matches(Some("urgent"), &[]));
    assert!(f.text().starts_with("(region IN"));
}
