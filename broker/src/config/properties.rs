//! A reader for Java's `.properties` format, following `java.util.Properties.load`.
//!
//! Rules: natural lines end at `\n`, `\r` or `\r\n`; leading whitespace (space, tab, form
//! feed) is skipped; lines whose first non-blank character is `#` or `!` are comments; a line
//! ending in an odd number of backslashes continues on the next line (whose leading whitespace
//! is skipped). The key ends at the first unescaped `=`, `:` or whitespace; whitespace and at
//! most one `=`/`:` separate it from the value. Escapes `\t \n \r \f \uXXXX` are decoded and any
//! other escaped character stands for itself (`\\`, `\:`, `\=`, `\ `, `\#`). Trailing whitespace
//! of a value is kept (Kafka trims when it parses). A repeated key keeps its last value.

use super::error::ConfigError;

/// Parses `.properties` text into `(key, value)` pairs in file order (repeats kept; callers
/// that build a map get "last wins"). Fails only on a malformed `\uXXXX` escape, naming the
/// line it appeared on.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for (line_no, logical) in logical_lines(text) {
        let (key, value) = split_key_value(&logical);
        let key = unescape(key).map_err(|e| malformed(line_no, e))?;
        let value = unescape(value).map_err(|e| malformed(line_no, e))?;
        out.push((key, value));
    }
    Ok(out)
}

fn malformed(line_no: usize, what: String) -> ConfigError {
    ConfigError::Invalid(format!("line {line_no}: {what}"))
}

fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\u{000C}'
}

/// Splits text into natural lines, accepting `\n`, `\r` and `\r\n` as terminators.
fn natural_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                i += 1;
                if i < bytes.len() && bytes[i] == b'\n' {
                    i += 1;
                }
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

fn trailing_backslashes(s: &str) -> usize {
    s.chars().rev().take_while(|&c| c == '\\').count()
}

/// Joins continued lines and drops blanks and comments; yields (first line number, text).
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let lines = natural_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let first = lines[i].trim_start_matches(is_ws);
        i += 1;
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::new();
        let mut current = first;
        loop {
            if trailing_backslashes(current) % 2 == 1 {
                logical.push_str(&current[..current.len() - 1]);
                if i < lines.len() {
                    current = lines[i].trim_start_matches(is_ws);
                    i += 1;
                    continue;
                }
                break;
            }
            logical.push_str(current);
            break;
        }
        out.push((line_no, logical));
    }
    out
}

/// Splits a logical line (escapes still encoded) into raw key and raw value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut value_start = line.len();
    let mut has_sep = false;
    let mut escaped = false;
    for (idx, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' {
            key_end = idx;
            value_start = idx + 1;
            has_sep = true;
            break;
        } else if is_ws(c) {
            key_end = idx;
            value_start = idx + c.len_utf8();
            break;
        }
    }
    let rest = &line[value_start.min(line.len())..];
    let mut skip = 0;
    for (idx, c) in rest.char_indices() {
        if is_ws(c) {
            skip = idx + c.len_utf8();
        } else if !has_sep && (c == '=' || c == ':') {
            has_sep = true;
            skip = idx + 1;
        } else {
            break;
        }
    }
    (&line[..key_end], &rest[skip..])
}

/// Decodes `\t \n \r \f \uXXXX` and `\x` (= `x`).
fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{000C}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = if hex.len() == 4 {
                    u32::from_str_radix(&hex, 16).ok()
                } else {
                    None
                };
                match code.and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => return Err(format!("Malformed \\uxxxx encoding: \\u{hex}")),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse_properties(text).unwrap()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn separators_and_comments() {
        let text = "# comment\n! also comment\n\n  a=1\nb: 2\nc 3\nd\t=\t4\ne\n  f = x y  \n";
        assert_eq!(
            kv(text),
            vec![
                pair("a", "1"),
                pair("b", "2"),
                pair("c", "3"),
                pair("d", "4"),
                pair("e", ""),
                pair("f", "x y  "),
            ]
        );
    }

    #[test]
    fn continuation_lines() {
        let text = "listeners=PLAINTEXT://:9092,\\\n    CONTROLLER://:9093\nnext=1\n";
        assert_eq!(
            kv(text),
            vec![
                pair("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                pair("next", "1")
            ]
        );
        // An even number of backslashes is an escaped backslash, not a continuation.
        assert_eq!(kv("a=x\\\\\nb=y"), vec![pair("a", "x\\"), pair("b", "y")]);
        // Continuation at end of input.
        assert_eq!(kv("a=x\\"), vec![pair("a", "x")]);
        // A comment line never continues.
        assert_eq!(kv("# c \\\nb=1"), vec![pair("b", "1")]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            kv(r"a\:b\=c=v\tw\nx\\y\:z\=\u0041"),
            vec![pair("a:b=c", "v\tw\nx\\y:z=A")]
        );
        assert_eq!(
            kv(r"key\ with\ spaces = v"),
            vec![pair("key with spaces", "v")]
        );
        assert!(parse_properties(r"a=\u00zz").is_err());
    }

    #[test]
    fn line_endings_and_last_wins_order() {
        assert_eq!(
            kv("a=1\r\nb=2\rc=3\na=4"),
            vec![
                pair("a", "1"),
                pair("b", "2"),
                pair("c", "3"),
                pair("a", "4")
            ]
        );
    }

    #[test]
    fn value_may_contain_separators() {
        assert_eq!(
            kv("listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
            vec![pair(
                "listener.security.protocol.map",
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
            )]
        );
        assert_eq!(kv("a==b"), vec![pair("a", "=b")]);
        assert_eq!(kv("a = = b"), vec![pair("a", "= b")]);
    }
}
