//! The SQL92 filter syntax tree and its recursive-descent parser.
//!
//! Grammar (lowest precedence first; keywords case-insensitive):
//!
//! ```text
//! or        := and (OR and)*
//! and       := not (AND not)*
//! not       := NOT not | predicate
//! predicate := '(' or ')'
//!            | operand [ ('=' | '<>' | '!=' | '<' | '<=' | '>' | '>=') operand
//!                      | IS [NOT] NULL
//!                      | [NOT] BETWEEN number AND number
//!                      | [NOT] IN '(' literal (',' literal)* ')'
//!                      | [NOT] LIKE string [ESCAPE string]
//!                      | [NOT] (CONTAINS | STARTSWITH | ENDSWITH) string ]
//! operand   := identifier | string | ['-'] number | TRUE | FALSE
//! ```
//!
//! As in RocketMQ, ordering comparisons and BETWEEN take numbers: a string
//! or boolean literal there is refused when the filter is parsed. A bare
//! property stands for "its value is `true`". Nesting of parentheses and NOT
//! is limited to [`MAX_DEPTH`] levels so evaluation cannot exhaust the stack.

use super::lexer::{lex, Keyword, Tok, Token};
use super::like::LikePattern;

/// Deepest nesting of parentheses and NOT a filter may use.
pub const MAX_DEPTH: usize = 64;

/// A value in an expression: a message property or a literal.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Operand {
    /// A user property, or the message tag for `TAGS`.
    Property(String),
    Str(String),
    Int(i64),
    Dec(f64),
    Bool(bool),
}

impl Operand {
    fn is_number(&self) -> bool {
        matches!(self, Operand::Int(_) | Operand::Dec(_))
    }

    /// A literal that cannot be ordered (string or boolean).
    fn is_unordered_literal(&self) -> bool {
        matches!(self, Operand::Str(_) | Operand::Bool(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A boolean expression.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// TRUE or FALSE on its own.
    Const(bool),
    /// A property on its own: true when its value is `true`.
    Truthy(String),
    Compare {
        op: CmpOp,
        left: Operand,
        right: Operand,
    },
    Between {
        value: Operand,
        low: Operand,
        high: Operand,
        negated: bool,
    },
    In {
        value: Operand,
        list: Vec<Operand>,
        negated: bool,
    },
    Like {
        value: Operand,
        pattern: LikePattern,
        negated: bool,
    },
    Text {
        op: TextOp,
        value: Operand,
        arg: String,
        negated: bool,
    },
    IsNull {
        value: Operand,
        negated: bool,
    },
}

/// Parses a whole expression; the error says what is wrong and where.
pub(super) fn parse(text: &str) -> Result<Expr, String> {
    let toks = lex(text)?;
    if toks.is_empty() {
        return Err("the expression is empty".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    if let Some(t) = p.toks.get(p.pos) {
        return Err(format!(
            "unexpected {} at column {}: expected AND, OR or the end of the expression",
            t.tok, t.col
        ));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.toks.get(self.pos + ahead).map(|t| &t.tok)
    }

    /// The column of the next token (one past the end when there is none).
    fn col(&self) -> usize {
        match self.toks.get(self.pos) {
            Some(t) => t.col,
            None => self.toks.last().map_or(1, |t| t.col + 1),
        }
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_kw(&mut self, k: Keyword) -> bool {
        self.eat(&Tok::Kw(k))
    }

    /// The error for an unexpected token (or the end) where `what` was expected.
    fn expected(&self, what: &str) -> String {
        match self.toks.get(self.pos) {
            Some(t) => format!("expected {what} at column {}, found {}", t.col, t.tok),
            None => format!("expected {what} at column {}, found the end", self.col()),
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<(), String> {
        if self.eat(&tok) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn deeper(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!(
                "nesting deeper than {MAX_DEPTH} levels at column {}",
                self.col()
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.eat_kw(Keyword::Or) {
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.not()?];
        while self.eat_kw(Keyword::And) {
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat_kw(Keyword::Not) {
            self.deeper()?;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, String> {
        if self.eat(&Tok::LParen) {
            self.deeper()?;
            let e = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            self.depth -= 1;
            return Ok(e);
        }
        let col = self.col();
        let left = self.operand()?;
        let op = match self.peek() {
            Some(Tok::Eq) => Some(CmpOp::Eq),
            Some(Tok::Ne) => Some(CmpOp::Ne),
            Some(Tok::Lt) => Some(CmpOp::Lt),
            Some(Tok::Le) => Some(CmpOp::Le),
            Some(Tok::Gt) => Some(CmpOp::Gt),
            Some(Tok::Ge) => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.pos += 1;
            let right_col = self.col();
            let right = self.operand()?;
            if !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                for (o, c) in [(&left, col), (&right, right_col)] {
                    if o.is_unordered_literal() {
                        return Err(format!(
                            "the value at column {c} cannot be ordered: <, <=, > and >= compare numbers"
                        ));
                    }
                }
            }
            return Ok(Expr::Compare { op, left, right });
        }
        if self.eat_kw(Keyword::Is) {
            let negated = self.eat_kw(Keyword::Not);
            self.expect(Tok::Kw(Keyword::Null), "NULL")?;
            return Ok(Expr::IsNull {
                value: left,
                negated,
            });
        }
        let negated = self.peek() == Some(&Tok::Kw(Keyword::Not))
            && matches!(
                self.peek_at(1),
                Some(Tok::Kw(
                    Keyword::Between
                        | Keyword::In
                        | Keyword::Like
                        | Keyword::Contains
                        | Keyword::StartsWith
                        | Keyword::EndsWith
                ))
            );
        if negated {
            self.pos += 1;
        }
        match self.peek() {
            Some(Tok::Kw(Keyword::Between)) => {
                self.pos += 1;
                if left.is_unordered_literal() {
                    return Err(format!(
                        "the value at column {col} cannot be ordered: BETWEEN compares numbers"
                    ));
                }
                let low = self.number("a number after BETWEEN")?;
                self.expect(Tok::Kw(Keyword::And), "AND")?;
                let high = self.number("a number after BETWEEN ... AND")?;
                Ok(Expr::Between {
                    value: left,
                    low,
                    high,
                    negated,
                })
            }
            Some(Tok::Kw(Keyword::In)) => {
                self.pos += 1;
                self.expect(Tok::LParen, "'(' after IN")?;
                let mut list = vec![self.literal("a literal")?];
                while self.eat(&Tok::Comma) {
                    list.push(self.literal("a literal")?);
                }
                self.expect(Tok::RParen, "',' or ')'")?;
                Ok(Expr::In {
                    value: left,
                    list,
                    negated,
                })
            }
            Some(Tok::Kw(Keyword::Like)) => {
                self.pos += 1;
                let pattern_col = self.col();
                let pattern = self.string("a string pattern after LIKE")?;
                let escape = if self.eat_kw(Keyword::Escape) {
                    let c = self.col();
                    let s = self.string("a string after ESCAPE")?;
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(e), None) => Some(e),
                        _ => {
                            return Err(format!(
                                "the ESCAPE string at column {c} must be one character"
                            ))
                        }
                    }
                } else {
                    None
                };
                let pattern = LikePattern::compile(&pattern, escape)
                    .map_err(|e| format!("LIKE pattern at column {pattern_col}: {e}"))?;
                Ok(Expr::Like {
                    value: left,
                    pattern,
                    negated,
                })
            }
            Some(Tok::Kw(k @ (Keyword::Contains | Keyword::StartsWith | Keyword::EndsWith))) => {
                let op = match k {
                    Keyword::Contains => TextOp::Contains,
                    Keyword::StartsWith => TextOp::StartsWith,
                    _ => TextOp::EndsWith,
                };
                self.pos += 1;
                let arg = self.string("a string")?;
                Ok(Expr::Text {
                    op,
                    value: left,
                    arg,
                    negated,
                })
            }
            _ => match left {
                Operand::Property(p) => Ok(Expr::Truthy(p)),
                Operand::Bool(b) => Ok(Expr::Const(b)),
                _ => Err(format!(
                    "the value at column {col} is not a condition: compare it with =, <>, <, IN, LIKE ..."
                )),
            },
        }
    }

    /// A property or a literal.
    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek() {
            Some(Tok::Ident(_)) => match self.next() {
                Some(Tok::Ident(name)) => Ok(Operand::Property(name)),
                _ => unreachable!("peeked an identifier"),
            },
            Some(Tok::Kw(Keyword::Null)) => Err(format!(
                "NULL at column {} cannot be compared: use IS NULL or IS NOT NULL",
                self.col()
            )),
            _ => self.literal("a property, a literal or '('"),
        }
    }

    /// A string, number (optionally negative), TRUE or FALSE.
    fn literal(&mut self, what: &str) -> Result<Operand, String> {
        let o = match self.peek() {
            Some(Tok::Str(_)) => match self.next() {
                Some(Tok::Str(s)) => Operand::Str(s),
                _ => unreachable!("peeked a string"),
            },
            Some(Tok::Int(n)) => Operand::Int(*n),
            Some(Tok::Dec(n)) => Operand::Dec(*n),
            Some(Tok::Kw(Keyword::True)) => Operand::Bool(true),
            Some(Tok::Kw(Keyword::False)) => Operand::Bool(false),
            Some(Tok::Minus) => {
                self.pos += 1;
                return match self.peek() {
                    Some(Tok::Int(n)) => {
                        let n = -*n;
                        self.pos += 1;
                        Ok(Operand::Int(n))
                    }
                    Some(Tok::Dec(n)) => {
                        let n = -*n;
                        self.pos += 1;
                        Ok(Operand::Dec(n))
                    }
                    _ => Err(self.expected("a number after '-'")),
                };
            }
            _ => return Err(self.expected(what)),
        };
        if !matches!(o, Operand::Str(_)) {
            self.pos += 1;
        }
        Ok(o)
    }

    fn number(&mut self, what: &str) -> Result<Operand, String> {
        let start = self.pos;
        match self.literal(what) {
            Ok(o) if o.is_number() => Ok(o),
            _ => {
                self.pos = start;
                Err(self.expected(what))
            }
        }
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        match self.peek() {
            Some(Tok::Str(_)) => match self.next() {
                Some(Tok::Str(s)) => Ok(s),
                _ => unreachable!("peeked a string"),
            },
            _ => Err(self.expected(what)),
        }
    }
}
