//! The SQL92 filter lexer: turns an expression into tokens, each with the
//! 1-based character column where it starts (for error messages).
//!
//! Keywords are case-insensitive; identifiers (property names) are kept as
//! written. String literals use single quotes, a doubled quote stands for one
//! quote. Numbers are integers (`42`) or decimals (`4.2`, `1e3`, `.5`); a minus
//! sign is its own token and the parser folds it into the number after it.

use std::fmt;

/// Reserved words of the filter language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keyword {
    And,
    Or,
    Not,
    Between,
    In,
    Is,
    Null,
    Like,
    Escape,
    True,
    False,
    Contains,
    StartsWith,
    EndsWith,
}

impl Keyword {
    fn from_word(word: &str) -> Option<Keyword> {
        const ALL: [(&str, Keyword); 14] = [
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("NOT", Keyword::Not),
            ("BETWEEN", Keyword::Between),
            ("IN", Keyword::In),
            ("IS", Keyword::Is),
            ("NULL", Keyword::Null),
            ("LIKE", Keyword::Like),
            ("ESCAPE", Keyword::Escape),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
            ("CONTAINS", Keyword::Contains),
            ("STARTSWITH", Keyword::StartsWith),
            ("ENDSWITH", Keyword::EndsWith),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|(_, k)| *k)
    }
}

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Dec(f64),
    Kw(Keyword),
    LParen,
    RParen,
    Comma,
    Minus,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier {s}"),
            Tok::Str(s) => write!(f, "string '{}'", s.replace('\'', "''")),
            Tok::Int(n) => write!(f, "number {n}"),
            Tok::Dec(n) => write!(f, "number {n}"),
            Tok::Kw(k) => write!(f, "{}", format!("{k:?}").to_ascii_uppercase()),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Comma => f.write_str("','"),
            Tok::Minus => f.write_str("'-'"),
            Tok::Eq => f.write_str("'='"),
            Tok::Ne => f.write_str("'<>'"),
            Tok::Lt => f.write_str("'<'"),
            Tok::Le => f.write_str("'<='"),
            Tok::Gt => f.write_str("'>'"),
            Tok::Ge => f.write_str("'>='"),
        }
    }
}

/// A token and the 1-based character column where it starts.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    pub col: usize,
}

/// Splits `text` into tokens; the error names the column and what is wrong.
pub(super) fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '-' => (Tok::Minus, 1),
            '=' if next == Some('=') => return Err(unknown("==", col, "use '='")),
            '=' => (Tok::Eq, 1),
            '!' if next == Some('=') => (Tok::Ne, 2),
            '<' if next == Some('>') => (Tok::Ne, 2),
            '<' if next == Some('=') => (Tok::Le, 2),
            '<' => (Tok::Lt, 1),
            '>' if next == Some('=') => (Tok::Ge, 2),
            '>' => (Tok::Gt, 1),
            '&' if next == Some('&') => return Err(unknown("&&", col, "use AND")),
            '|' if next == Some('|') => return Err(unknown("||", col, "use OR")),
            '\'' => string(&chars, i)?,
            c if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) => {
                number(&chars, i)?
            }
            c if is_ident_start(c) => {
                let len = chars[i..].iter().take_while(|c| is_ident_part(**c)).count();
                let word: String = chars[i..i + len].iter().collect();
                let tok = match Keyword::from_word(&word) {
                    Some(k) => Tok::Kw(k),
                    None => Tok::Ident(word),
                };
                (tok, len)
            }
            '!' => return Err(unknown("!", col, "use NOT")),
            '+' | '*' | '/' | '%' | '&' | '|' | '^' | '~' => {
                return Err(unknown(
                    &c.to_string(),
                    col,
                    "filters have no arithmetic or bit operators",
                ))
            }
            '"' => {
                return Err(format!(
                    "unexpected '\"' at column {col}: string literals use single quotes"
                ))
            }
            c => return Err(format!("unexpected character {c:?} at column {col}")),
        };
        out.push(Token { tok, col });
        i += len;
    }
    Ok(out)
}

fn unknown(op: &str, col: usize, hint: &str) -> String {
    format!("unknown operator '{op}' at column {col} ({hint})")
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_part(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.'
}

/// A quoted string starting at `start`; returns the token and its length.
fn string(chars: &[char], start: usize) -> Result<(Tok, usize), String> {
    let mut s = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(format!(
                    "unterminated string literal starting at column {}",
                    start + 1
                ))
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                s.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((Tok::Str(s), i + 1 - start)),
            Some(c) => {
                s.push(*c);
                i += 1;
            }
        }
    }
}

/// A number starting at `start`; returns the token and its length.
fn number(chars: &[char], start: usize) -> Result<(Tok, usize), String> {
    let digits = |from: usize| {
        chars[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    let mut end = start + digits(start);
    let mut decimal = false;
    if chars.get(end) == Some(&'.') {
        decimal = true;
        end += 1 + digits(end + 1);
    }
    if matches!(chars.get(end), Some('e' | 'E')) {
        let mut j = end + 1;
        if matches!(chars.get(j), Some('+' | '-')) {
            j += 1;
        }
        let exp = digits(j);
        if exp == 0 {
            return Err(format!("malformed number at column {}", start + 1));
        }
        decimal = true;
        end = j + exp;
    }
    if chars.get(end).is_some_and(|c| is_ident_part(*c)) {
        return Err(format!("malformed number at column {}", start + 1));
    }
    let text: String = chars[start..end].iter().collect();
    let tok = if decimal {
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Tok::Dec(v),
            _ => {
                return Err(format!(
                    "number {text} at column {} is out of range",
                    start + 1
                ))
            }
        }
    } else {
        match text.parse::<i64>() {
            Ok(v) => Tok::Int(v),
            Err(_) => {
                return Err(format!(
                    "number {text} at column {} is out of range",
                    start + 1
                ))
            }
        }
    };
    Ok((tok, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        lex(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_and_columns() {
        let t = lex("a.b >= 10 AND x<>'it''s'").unwrap();
        assert_eq!(
            t.iter().map(|t| t.tok.clone()).collect::<Vec<_>>(),
            vec![
                Tok::Ident("a.b".into()),
                Tok::Ge,
                Tok::Int(10),
                Tok::Kw(Keyword::And),
                Tok::Ident("x".into()),
                Tok::Ne,
                Tok::Str("it's".into()),
            ]
        );
        assert_eq!(
            t.iter().map(|t| t.col).collect::<Vec<_>>(),
            vec![1, 5, 8, 11, 15, 16, 18]
        );
    }

    #[test]
    fn keywords_are_case_insensitive_identifiers_are_not() {
        assert_eq!(
            toks("and Or nOt between In is NULL like true FALSE Tags"),
            vec![
                Tok::Kw(Keyword::And),
                Tok::Kw(Keyword::Or),
                Tok::Kw(Keyword::Not),
                Tok::Kw(Keyword::Between),
                Tok::Kw(Keyword::In),
                Tok::Kw(Keyword::Is),
                Tok::Kw(Keyword::Null),
                Tok::Kw(Keyword::Like),
                Tok::Kw(Keyword::True),
                Tok::Kw(Keyword::False),
                Tok::Ident("Tags".into()),
            ]
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("0 42 4.5 .5 1e3 2E-2 -7"),
            vec![
                Tok::Int(0),
                Tok::Int(42),
                Tok::Dec(4.5),
                Tok::Dec(0.5),
                Tok::Dec(1000.0),
                Tok::Dec(0.02),
                Tok::Minus,
                Tok::Int(7),
            ]
        );
        assert!(lex("12abc").unwrap_err().contains("malformed number"));
        assert!(lex("1e").unwrap_err().contains("malformed number"));
        assert!(lex("99999999999999999999")
            .unwrap_err()
            .contains("out of range"));
        assert!(lex("1e999").unwrap_err().contains("out of range"));
    }

    #[test]
    fn bad_input_names_the_problem() {
        assert!(lex("a = 'open")
            .unwrap_err()
            .contains("unterminated string"));
        assert!(lex("a == 1").unwrap_err().contains("unknown operator '=='"));
        assert!(lex("a && b").unwrap_err().contains("unknown operator '&&'"));
        assert!(lex("a + 1").unwrap_err().contains("unknown operator '+'"));
        assert!(lex("a = \"x\"").unwrap_err().contains("single quotes"));
        assert!(lex("a # 1").unwrap_err().contains("column 3"));
    }
}
