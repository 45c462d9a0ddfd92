//! Evaluates a parsed SQL92 filter against one message, with SQL's
//! three-valued logic: `None` is "unknown".
//!
//! - A missing property is NULL: every comparison, BETWEEN, IN, LIKE with it
//!   is unknown, so neither `a = 1` nor `a <> 1` nor `NOT (a = 1)` matches;
//!   only `IS NULL` is true. `TAGS` is the message tag (NULL without one).
//! - Property values are text. Compared with a number (or ordered, or used
//!   with BETWEEN) the text is read as a decimal number; text that is no
//!   number makes that comparison unknown. Compared with TRUE/FALSE it is
//!   read as `true`/`false` (any case).
//! - AND is false if any side is false, OR true if any side is true; NOT
//!   keeps unknown unknown. A message matches only when the whole filter is
//!   true.

use super::sql::{CmpOp, Expr, Operand, TextOp};
use std::cmp::Ordering;

/// What a filter can see of a message.
pub(super) struct Context<'a> {
    pub tag: Option<&'a str>,
    pub properties: &'a [(String, String)],
}

impl<'a> Context<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        if name == "TAGS" {
            return self.tag;
        }
        self.properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug)]
enum Val<'a> {
    Str(&'a str),
    Int(i64),
    Dec(f64),
    Bool(bool),
}

#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i64),
    Dec(f64),
}

pub(super) fn eval(e: &Expr, cx: &Context<'_>) -> Option<bool> {
    match e {
        Expr::And(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, cx) {
                    Some(false) => return Some(false),
                    None => unknown = true,
                    Some(true) => {}
                }
            }
            (!unknown).then_some(true)
        }
        Expr::Or(items) => {
            let mut unknown = false;
            for item in items {
                match eval(item, cx) {
                    Some(true) => return Some(true),
                    None => unknown = true,
                    Some(false) => {}
                }
            }
            (!unknown).then_some(false)
        }
        Expr::Not(inner) => eval(inner, cx).map(|b| !b),
        Expr::Const(b) => Some(*b),
        Expr::Truthy(name) => cx.get(name).and_then(parse_bool),
        Expr::Compare { op, left, right } => {
            let (l, r) = (value(left, cx)?, value(right, cx)?);
            match op {
                CmpOp::Eq => equal(l, r),
                CmpOp::Ne => equal(l, r).map(|b| !b),
                _ => {
                    let o = order(l, r)?;
                    Some(match op {
                        CmpOp::Lt => o == Ordering::Less,
                        CmpOp::Le => o != Ordering::Greater,
                        CmpOp::Gt => o == Ordering::Greater,
                        _ => o != Ordering::Less,
                    })
                }
            }
        }
        Expr::Between {
            value: v,
            low,
            high,
            negated,
        } => {
            let v = value(v, cx)?;
            let above = order(v, value(low, cx)?)? != Ordering::Less;
            let below = order(v, value(high, cx)?)? != Ordering::Greater;
            Some((above && below) != *negated)
        }
        Expr::In {
            value: v,
            list,
            negated,
        } => {
            let v = value(v, cx)?;
            let hit = list
                .iter()
                .filter_map(|o| value(o, cx))
                .any(|o| equal(v, o) == Some(true));
            Some(hit != *negated)
        }
        Expr::Like {
            value: v,
            pattern,
            negated,
        } => match value(v, cx)? {
            Val::Str(s) => Some(pattern.matches(s) != *negated),
            _ => None,
        },
        Expr::Text {
            op,
            value: v,
            arg,
            negated,
        } => match value(v, cx)? {
            Val::Str(s) => {
                let hit = match op {
                    TextOp::Contains => s.contains(arg.as_str()),
                    TextOp::StartsWith => s.starts_with(arg.as_str()),
                    TextOp::EndsWith => s.ends_with(arg.as_str()),
                };
                Some(hit != *negated)
            }
            _ => None,
        },
        Expr::IsNull { value: v, negated } => Some(value(v, cx).is_none() != *negated),
    }
}

/// The value of an operand; `None` for a missing property (NULL).
fn value<'a>(o: &'a Operand, cx: &Context<'a>) -> Option<Val<'a>> {
    Some(match o {
        Operand::Property(name) => Val::Str(cx.get(name)?),
        Operand::Str(s) => Val::Str(s),
        Operand::Int(n) => Val::Int(*n),
        Operand::Dec(n) => Val::Dec(*n),
        Operand::Bool(b) => Val::Bool(*b),
    })
}

fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Reads text as a decimal number: an integer if it is one, else a finite
/// decimal (`1.5`, `-2e3`); anything else (`abc`, `NaN`, `inf`) is no number.
fn parse_number(s: &str) -> Option<Num> {
    if let Ok(n) = s.parse::<i64>() {
        return Some(Num::Int(n));
    }
    let plausible = s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    match s.parse::<f64>() {
        Ok(n) if plausible && n.is_finite() => Some(Num::Dec(n)),
        _ => None,
    }
}

fn number(v: Val<'_>) -> Option<Num> {
    match v {
        Val::Int(n) => Some(Num::Int(n)),
        Val::Dec(n) => Some(Num::Dec(n)),
        Val::Str(s) => parse_number(s),
        Val::Bool(_) => None,
    }
}

fn order(l: Val<'_>, r: Val<'_>) -> Option<Ordering> {
    match (number(l)?, number(r)?) {
        (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
        (a, b) => as_f64(a).partial_cmp(&as_f64(b)),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(n) => n as f64,
        Num::Dec(n) => n,
    }
}

fn equal(l: Val<'_>, r: Val<'_>) -> Option<bool> {
    match (l, r) {
        (Val::Str(a), Val::Str(b)) => Some(a == b),
        (Val::Bool(a), Val::Bool(b)) => Some(a == b),
        (Val::Bool(b), Val::Str(s)) | (Val::Str(s), Val::Bool(b)) => parse_bool(s).map(|v| v == b),
        (Val::Bool(_), _) | (_, Val::Bool(_)) => None,
        _ => order(l, r).map(|o| o == Ordering::Equal),
    }
}
