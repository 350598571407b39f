//! Windows on event time, as ksqlDB writes them after the FROM clause:
//! `WINDOW TUMBLING (SIZE 1 HOUR [, GRACE PERIOD 10 MINUTES])`,
//! `WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES [, GRACE PERIOD ...])`,
//! `WINDOW SESSION (30 MINUTES [, GRACE PERIOD ...])`.
//!
//! Event time is the record's timestamp (ROWTIME). A window accepts events until the view's
//! stream time (the largest event time it has seen) passes the window's end plus the grace
//! period; a later event is late: counted and dropped, as Kafka Streams and ksqlDB do. The
//! default grace period is 24 hours (Kafka Streams' default before 3.0, and ksqlDB's).

use sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::Result;
use crate::parse::{syntax_at, word};

/// Grace period when the statement names none.
pub const DEFAULT_GRACE_MS: i64 = 24 * 3600 * 1000;
/// Most windows one event may fall into (a hopping window's size / advance).
pub const MAX_WINDOWS_PER_EVENT: i64 = 1000;

/// The kind of window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size` ms, aligned to the epoch.
    Tumbling {
        /// Size in ms.
        size: i64,
    },
    /// Fixed windows of `size` ms starting every `advance` ms (they overlap).
    Hopping {
        /// Size in ms.
        size: i64,
        /// Advance in ms.
        advance: i64,
    },
    /// Windows of activity per key, closed by `gap` ms without events.
    Session {
        /// Inactivity gap in ms.
        gap: i64,
    },
}

/// A WINDOW clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Kind and sizes.
    pub kind: WindowKind,
    /// Grace period in ms.
    pub grace: i64,
}

impl WindowSpec {
    /// The starts of the fixed windows holding time `t` (empty for session windows).
    pub fn starts(&self, t: i64) -> impl Iterator<Item = i64> {
        let (size, advance) = match self.kind {
            WindowKind::Tumbling { size } => (size, size),
            WindowKind::Hopping { size, advance } => (size, advance),
            WindowKind::Session { .. } => (0, 1),
        };
        // The last window starting at or before t, then back while the window still holds t.
        let last = t.div_euclid(advance) * advance;
        (0..)
            .map(move |i| last - i * advance)
            .take_while(move |s| size > 0 && *s + size > t)
            .take(MAX_WINDOWS_PER_EVENT as usize)
    }

    /// A fixed window's size (None for sessions).
    pub fn size(&self) -> Option<i64> {
        match self.kind {
            WindowKind::Tumbling { size } | WindowKind::Hopping { size, .. } => Some(size),
            WindowKind::Session { .. } => None,
        }
    }

    /// The clause as written back (EXPLAIN, DESCRIBE).
    pub fn describe(&self) -> String {
        let grace = format!("GRACE PERIOD {}", duration_text(self.grace));
        match self.kind {
            WindowKind::Tumbling { size } => format!("TUMBLING (SIZE {}, {grace})", duration_text(size)),
            WindowKind::Hopping { size, advance } => {
                format!("HOPPING (SIZE {}, ADVANCE BY {}, {grace})", duration_text(size), duration_text(advance))
            }
            WindowKind::Session { gap } => format!("SESSION ({}, {grace})", duration_text(gap)),
        }
    }
}

fn duration_text(ms: i64) -> String {
    for (unit, n) in [("DAYS", 86_400_000), ("HOURS", 3_600_000), ("MINUTES", 60_000), ("SECONDS", 1000)] {
        if ms % n == 0 && ms >= n {
            return format!("{} {unit}", ms / n);
        }
    }
    format!("{ms} MILLISECONDS")
}

/// Removes a `WINDOW kind (...)` clause from the tokens and reads it. ksqlDB puts it after
/// FROM; standard SQL's named `WINDOW w AS (...)` (after HAVING) is left for the parser,
/// which evident then refuses as unsupported.
pub(crate) fn take_window(tokens: &mut Vec<TokenWithSpan>) -> Result<Option<WindowSpec>> {
    let kind_at = |i: usize| {
        tokens
            .get(i + 1)
            .and_then(word)
            .map(|w| w.value.to_ascii_uppercase())
            .filter(|k| matches!(k.as_str(), "TUMBLING" | "HOPPING" | "SESSION"))
    };
    let Some(i) = (0..tokens.len()).find(|&i| {
        tokens.get(i).and_then(word).is_some_and(|w| w.value.eq_ignore_ascii_case("WINDOW")) && kind_at(i).is_some()
    }) else {
        return Ok(None);
    };
    let kind = kind_at(i).unwrap_or_default();
    let open = i + 2;
    if tokens.get(open).map(|t| &t.token) != Some(&Token::LParen) {
        let at = tokens.get(open).map_or(tokens[i + 1].span.end, |t| t.span.start);
        return Err(syntax_at(
            at,
            &format!("WINDOW {kind} needs its sizes in parentheses"),
            Some("WINDOW TUMBLING (SIZE 1 HOUR)"),
        ));
    }
    let Some(close) = (open..tokens.len()).find(|&j| tokens[j].token == Token::RParen) else {
        return Err(syntax_at(tokens[open].span.start, "unclosed WINDOW clause", None));
    };
    // Comma-separated items, each a list of words and numbers.
    let mut items: Vec<Vec<&TokenWithSpan>> = vec![Vec::new()];
    for t in &tokens[open + 1..close] {
        if t.token == Token::Comma {
            items.push(Vec::new());
        } else if let Some(last) = items.last_mut() {
            last.push(t);
        }
    }
    let (mut size, mut advance, mut gap, mut grace) = (None, None, None, None);
    for item in &items {
        let at = item.first().map_or(tokens[open].span.start, |t| t.span.start);
        let words: Vec<String> = item
            .iter()
            .map(|t| match &t.token {
                Token::Word(w) => w.value.to_ascii_uppercase(),
                other => other.to_string(),
            })
            .collect();
        let strs: Vec<&str> = words.iter().map(String::as_str).collect();
        let bad = || {
            syntax_at(at, &format!("cannot read {:?} in WINDOW {kind}", strs.join(" ")), Some("SIZE 1 HOUR, ADVANCE BY 10 MINUTES, GRACE PERIOD 5 MINUTES; units MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS"))
        };
        match strs.as_slice() {
            ["SIZE", n, unit] => size = Some(duration(n, unit).ok_or_else(bad)?),
            ["ADVANCE", "BY", n, unit] => advance = Some(duration(n, unit).ok_or_else(bad)?),
            ["GRACE", "PERIOD", n, unit] => grace = Some(duration(n, unit).ok_or_else(bad)?),
            // Retention bounds how long ksqlDB keeps closed windows; evident keeps them all.
            ["RETENTION", n, unit] => {
                duration(n, unit).ok_or_else(bad)?;
            }
            [n, unit] if kind == "SESSION" => gap = Some(duration(n, unit).ok_or_else(bad)?),
            _ => return Err(bad()),
        }
    }
    let at = tokens[open].span.start;
    let kind = match kind.as_str() {
        "TUMBLING" => WindowKind::Tumbling {
            size: size
                .ok_or_else(|| syntax_at(at, "WINDOW TUMBLING needs SIZE", Some("WINDOW TUMBLING (SIZE 1 HOUR)")))?,
        },
        "HOPPING" => {
            let size = size.ok_or_else(|| syntax_at(at, "WINDOW HOPPING needs SIZE", None))?;
            let advance = advance.ok_or_else(|| {
                syntax_at(
                    at,
                    "WINDOW HOPPING needs ADVANCE BY",
                    Some("WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES)"),
                )
            })?;
            if advance > size {
                return Err(syntax_at(at, "ADVANCE BY cannot exceed SIZE", None));
            }
            if size / advance > MAX_WINDOWS_PER_EVENT {
                return Err(syntax_at(
                    at,
                    &format!("SIZE / ADVANCE BY is over {MAX_WINDOWS_PER_EVENT} windows per event"),
                    None,
                ));
            }
            WindowKind::Hopping { size, advance }
        }
        _ => WindowKind::Session {
            gap: gap.ok_or_else(|| {
                syntax_at(at, "WINDOW SESSION needs its inactivity gap", Some("WINDOW SESSION (30 MINUTES)"))
            })?,
        },
    };
    tokens.drain(i..=close);
    Ok(Some(WindowSpec { kind, grace: grace.unwrap_or(DEFAULT_GRACE_MS) }))
}

fn duration(n: &str, unit: &str) -> Option<i64> {
    let n: i64 = n.parse().ok().filter(|n| *n > 0)?;
    let scale = match unit.trim_end_matches('S') {
        "MILLISECOND" => 1,
        "SECOND" => 1000,
        "MINUTE" => 60_000,
        "HOUR" => 3_600_000,
        "DAY" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{parse, Statement};

    fn window(sql: &str) -> WindowSpec {
        match parse(sql).unwrap() {
            Statement::Create { select, .. } => select.window.unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn windows_parse_with_units_and_grace() {
        let w = window("CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES) GROUP BY k");
        assert_eq!(w, WindowSpec { kind: WindowKind::Tumbling { size: 3_600_000 }, grace: 600_000 });
        let w = window("CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW HOPPING (SIZE 30 SECONDS, ADVANCE BY 10 SECONDS) WHERE k > 1 GROUP BY k");
        assert_eq!(w.kind, WindowKind::Hopping { size: 30_000, advance: 10_000 });
        assert_eq!(w.grace, DEFAULT_GRACE_MS);
        let w = window("CREATE TABLE t AS SELECT k, COUNT(*) FROM s WINDOW SESSION (5 MINUTES) GROUP BY k");
        assert_eq!(w.kind, WindowKind::Session { gap: 300_000 });
        assert!(parse("CREATE TABLE t AS SELECT k FROM s WINDOW TUMBLING (SIZE 1 FORTNIGHT) GROUP BY k").is_err());
        assert!(parse(
            "CREATE TABLE t AS SELECT k FROM s WINDOW HOPPING (SIZE 1 SECOND, ADVANCE BY 2 SECONDS) GROUP BY k"
        )
        .is_err());
    }

    #[test]
    fn fixed_windows_hold_their_times() {
        let w = WindowSpec { kind: WindowKind::Hopping { size: 30, advance: 10 }, grace: 0 };
        assert_eq!(w.starts(25).collect::<Vec<_>>(), vec![20, 10, 0]);
        assert_eq!(w.starts(-5).collect::<Vec<_>>(), vec![-10, -20, -30]);
        let t = WindowSpec { kind: WindowKind::Tumbling { size: 10 }, grace: 0 };
        assert_eq!(t.starts(10).collect::<Vec<_>>(), vec![10]);
        assert_eq!(t.starts(9).collect::<Vec<_>>(), vec![0]);
    }
}
