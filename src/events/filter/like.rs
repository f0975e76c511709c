//! Postgres `LIKE` patterns: `%` matches any run of characters, `_` one
//! character, a backslash makes the next character literal. Characters are
//! Unicode scalar values, as in a UTF-8 database. `ILIKE` under
//! `COLLATE "C"` folds ASCII letters only, and so does [`Pattern`] with `fold`.

/// One pattern element.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A literal character.
    Char(char),
    /// `_`.
    One,
    /// `%`.
    Any,
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
    fold: bool,
}

/// A pattern Postgres would refuse.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EndsWithEscape;

impl Pattern {
    /// Compiles `pattern`; `fold` for `ILIKE` (ASCII case-insensitive).
    pub(super) fn new(pattern: &str, fold: bool) -> Result<Pattern, EndsWithEscape> {
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '%' => {
                    if tokens.last() == Some(&Token::Any) {
                        continue;
                    }
                    Token::Any
                }
                '_' => Token::One,
                '\\' => Token::Char(chars.next().ok_or(EndsWithEscape)?),
                c => Token::Char(c),
            });
        }
        Ok(Pattern { tokens, fold })
    }

    /// Whether `text` matches the whole pattern.
    pub(super) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let p = &self.tokens;
        let same = |a: char, b: char| a == b || (self.fold && a.eq_ignore_ascii_case(&b));
        let (mut ti, mut pi) = (0, 0);
        // The last `%` seen and the text position it currently stands for:
        // on a mismatch, let it swallow one more character. Every other
        // token has a fixed width, so one backtrack point suffices.
        let mut star: Option<(usize, usize)> = None;
        while ti < text.len() {
            match p.get(pi) {
                Some(Token::One) => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                Some(Token::Char(c)) if same(*c, text[ti]) => {
                    ti += 1;
                    pi += 1;
                    continue;
                }
                Some(Token::Any) => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            }
        }
        p[pi..].iter().all(|t| *t == Token::Any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(text: &str, pattern: &str) -> bool {
        Pattern::new(pattern, false).unwrap().matches(text)
    }

    fn ilike(text: &str, pattern: &str) -> bool {
        Pattern::new(pattern, true).unwrap().matches(text)
    }

    #[test]
    fn wildcards_and_escapes_follow_postgres() {
        assert!(like("abc", "abc"));
        assert!(!like("abc", "ab"));
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "%b%"));
        assert!(like("abc", "a_c"));
        assert!(!like("ac", "a_c"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("aXbXc", "a%b%c"));
        assert!(like("abcbd", "%b_"));
        assert!(like("mississippi", "%iss%ppi"));
        assert!(!like("mississippi", "%iss%ppx"));
        // Escapes: literal % and _, and an escaped ordinary character.
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
        assert!(like("a_b", "a\\_b"));
        assert!(!like("axb", "a\\_b"));
        assert!(like("a\\b", "a\\\\b"));
        assert!(like("ab", "a\\b"));
        assert_eq!(Pattern::new("ab\\", false), Err(EndsWithEscape));
        assert!(Pattern::new("ab\\\\", false).is_ok());
    }

    #[test]
    fn characters_are_code_points_and_ilike_folds_ascii_only() {
        assert!(like("é", "_"));
        assert!(like("日本", "__"));
        assert!(!like("日本", "_"));
        assert!(ilike("ABC", "a%c"));
        assert!(ilike("abc", "\\A%"));
        assert!(!ilike("É", "é"));
        assert!(!ilike("ß", "SS"));
        assert!(!like("ABC", "a%"));
    }
}
