//! LIKE patterns: `%` matches any run of characters (also none), `_` exactly
//! one character, anything else itself; an optional escape character makes
//! the character after it literal (`'100\%' ESCAPE '\'`).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Any,
    One,
    Lit(char),
}

/// A compiled LIKE pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LikePattern {
    parts: Vec<Part>,
}

impl LikePattern {
    pub(super) fn compile(pattern: &str, escape: Option<char>) -> Result<LikePattern, String> {
        let mut parts = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let part = if Some(c) == escape {
                match chars.next() {
                    Some(next) => Part::Lit(next),
                    None => return Err("it ends with its escape character".into()),
                }
            } else {
                match c {
                    '%' => Part::Any,
                    '_' => Part::One,
                    c => Part::Lit(c),
                }
            };
            // Consecutive `%` mean the same as one.
            if !(part == Part::Any && parts.last() == Some(&Part::Any)) {
                parts.push(part);
            }
        }
        Ok(LikePattern { parts })
    }

    /// Whether the whole of `text` matches. Greedy with backtracking to the
    /// last `%`: linear for the usual patterns, at worst text x pattern length.
    pub(super) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let parts = &self.parts;
        let (mut p, mut i) = (0, 0);
        // After the last `%` seen: the part after it, and where the text resumes.
        let mut backtrack: Option<(usize, usize)> = None;
        while i < text.len() {
            match parts.get(p) {
                Some(Part::One) => {
                    p += 1;
                    i += 1;
                    continue;
                }
                Some(Part::Lit(c)) if *c == text[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                Some(Part::Any) => {
                    p += 1;
                    backtrack = Some((p, i));
                    continue;
                }
                _ => {}
            }
            match backtrack {
                Some((after, from)) => {
                    // Let the `%` swallow one more character and retry.
                    p = after;
                    i = from + 1;
                    backtrack = Some((after, from + 1));
                }
                None => return false,
            }
        }
        parts[p..].iter().all(|part| *part == Part::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(pattern: &str, text: &str) -> bool {
        LikePattern::compile(pattern, None).unwrap().matches(text)
    }

    #[test]
    fn wildcards() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "abcd"));
        assert!(like("a%", "a"));
        assert!(like("a%", "abcdef"));
        assert!(like("%c", "abc"));
        assert!(like("%b%", "abc"));
        assert!(!like("%x%", "abc"));
        assert!(like("a_c", "abc"));
        assert!(!like("a_c", "ac"));
        assert!(like("_", "é"));
        assert!(like("%", ""));
        assert!(!like("_", ""));
        assert!(like("a%b%c", "a-b-b-c"));
        assert!(!like("a%b%c", "a-c-b"));
        assert!(like("%%a%%", "xax"));
        assert!(like("%aab", "aaab"));
    }

    #[test]
    fn escapes() {
        let p = LikePattern::compile("100\\%", Some('\\')).unwrap();
        assert!(p.matches("100%"));
        assert!(!p.matches("1000"));
        let p = LikePattern::compile("a!_b", Some('!')).unwrap();
        assert!(p.matches("a_b") && !p.matches("axb"));
        assert!(LikePattern::compile("abc!", Some('!')).is_err());
    }
}
