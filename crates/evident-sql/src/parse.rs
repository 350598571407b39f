//! From text to a statement. `sqlparser` (the Apache DataFusion project's parser) reads the
//! SQL; a pass over its tokens first takes out what is ksqlDB's and not standard SQL, so the
//! statements users copy from ksqlDB's documentation and from seed 000 parse as written:
//! - a hyphenated name where a source is named (after FROM, JOIN, DROP TABLE, DESCRIBE):
//!   `FROM order-events` is the topic `order-events`, not `order` minus `events` (elsewhere
//!   `a-b` stays a subtraction);
//! - `CREATE STREAM name AS SELECT` and `DROP STREAM`;
//! - `WINDOW TUMBLING|HOPPING|SESSION (...)` after the FROM clause;
//! - `AS OF SEQUENCE n` / `AS OF '<RFC 3339 time>'` after a pull query's view;
//! - `EMIT CHANGES` at the end of a push query;
//! - `SHOW TABLES|STREAMS|QUERIES` and `DESCRIBE name`.
//!
//! Syntax errors carry the line and column the parser stopped at and, where a common mistake
//! explains it, a hint.

use sqlparser::ast;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Word};

use crate::error::{Result, SqlError};
use crate::window::WindowSpec;

/// A table (an aggregate keyed by its GROUP BY) or a stream (a derived topic of rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    /// `CREATE TABLE ... AS SELECT ... GROUP BY`.
    Table,
    /// `CREATE STREAM ... AS SELECT`.
    Stream,
}

impl ViewKind {
    /// `TABLE` or `STREAM`.
    pub fn keyword(self) -> &'static str {
        match self {
            ViewKind::Table => "TABLE",
            ViewKind::Stream => "STREAM",
        }
    }
}

/// When a pull query looks at a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After the source event with this commit sequence (and every one before it).
    Sequence(u64),
    /// After every source event whose timestamp is at or before this time (ms since the epoch).
    Time(i64),
}

/// A SELECT with the clauses ksqlDB adds.
#[derive(Debug, Clone)]
pub struct Select {
    /// The standard part.
    pub query: Box<ast::Query>,
    /// `WINDOW ...`.
    pub window: Option<WindowSpec>,
    /// `AS OF ...`.
    pub as_of: Option<AsOf>,
    /// `EMIT CHANGES`: a push query.
    pub emit_changes: bool,
}

/// One statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `CREATE TABLE|STREAM name AS SELECT ...`.
    Create {
        /// Table or stream.
        kind: ViewKind,
        /// The view's name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The query.
        select: Select,
    },
    /// A pull or push query.
    Query(Select),
    /// `SHOW TABLES|STREAMS` (None: both).
    ShowViews(Option<ViewKind>),
    /// `SHOW QUERIES`: what maintains each view.
    ShowQueries,
    /// `DESCRIBE name`.
    Describe(String),
    /// `DROP TABLE|STREAM [IF EXISTS] name`.
    Drop {
        /// Table or stream.
        kind: ViewKind,
        /// The view.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `EXPLAIN statement`.
    Explain(Box<Statement>),
    /// `REBUILD TABLE|STREAM name` (evident's): recompute the view from its sources.
    Rebuild {
        /// Table or stream.
        kind: ViewKind,
        /// The view.
        name: String,
    },
}

/// Parses one statement (a trailing `;` is allowed; two statements are refused).
pub fn parse(sql: &str) -> Result<Statement> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| SqlError::Syntax {
        line: e.location.line,
        column: e.location.column,
        message: e.message.clone(),
        hint: None,
    })?;
    let mut tokens: Vec<TokenWithSpan> =
        tokens.into_iter().filter(|t| !matches!(t.token, Token::Whitespace(_))).collect::<Vec<_>>();
    let end = end_location(sql);
    // Statements end at the first `;` outside parentheses; anything after it but another `;`
    // is a second statement.
    if let Some(i) = tokens.iter().position(|t| t.token == Token::SemiColon) {
        if let Some(extra) = tokens[i + 1..].iter().find(|t| t.token != Token::SemiColon) {
            return Err(SqlError::Syntax {
                line: extra.span.start.line,
                column: extra.span.start.column,
                message: "a second statement".into(),
                hint: Some("send one statement per request (`evident sql -f` splits a file)".into()),
            });
        }
        tokens.truncate(i);
    }
    if tokens.is_empty() {
        return Err(SqlError::Syntax {
            line: end.line,
            column: end.column,
            message: "empty statement".into(),
            hint: None,
        });
    }
    statement(tokens, end)
}

fn statement(mut tokens: Vec<TokenWithSpan>, end: Location) -> Result<Statement> {
    let upper = |t: &TokenWithSpan| word(t).map(|w| w.value.to_ascii_uppercase());
    match upper(&tokens[0]).as_deref() {
        Some("EXPLAIN") => {
            tokens.remove(0);
            if tokens.is_empty() {
                return Err(syntax_at(end, "EXPLAIN needs a statement", None));
            }
            return Ok(Statement::Explain(Box::new(statement(tokens, end)?)));
        }
        Some("SHOW" | "LIST") => {
            let what = tokens.get(1).and_then(upper);
            let kind = match what.as_deref() {
                Some("TABLES") => Statement::ShowViews(Some(ViewKind::Table)),
                Some("STREAMS") => Statement::ShowViews(Some(ViewKind::Stream)),
                Some("VIEWS") => Statement::ShowViews(None),
                Some("QUERIES") => Statement::ShowQueries,
                _ => {
                    let at = tokens.get(1).map_or(end, |t| t.span.start);
                    return Err(syntax_at(
                        at,
                        "SHOW takes TABLES, STREAMS, VIEWS or QUERIES",
                        Some("topics are listed by GET /v1/topics or `evident topics list`"),
                    ));
                }
            };
            expect_end(&tokens, 2)?;
            return Ok(kind);
        }
        Some("DESCRIBE" | "DESC") => {
            let mut i = 1;
            if tokens.get(i).and_then(upper).as_deref() == Some("EXTENDED") {
                i += 1;
            }
            merge_hyphenated(&mut tokens, i);
            let name = tokens.get(i).and_then(word).map(|w| w.value.clone());
            let Some(name) = name else {
                let at = tokens.get(i).map_or(end, |t| t.span.start);
                return Err(syntax_at(at, "DESCRIBE needs the name of a view", None));
            };
            expect_end(&tokens, i + 1)?;
            return Ok(Statement::Describe(name));
        }
        Some("REBUILD") => {
            let kind = match tokens.get(1).and_then(upper).as_deref() {
                Some("TABLE") => ViewKind::Table,
                Some("STREAM") => ViewKind::Stream,
                _ => {
                    let at = tokens.get(1).map_or(end, |t| t.span.start);
                    return Err(syntax_at(at, "REBUILD takes TABLE or STREAM", None));
                }
            };
            merge_hyphenated(&mut tokens, 2);
            let Some(name) = tokens.get(2).and_then(word).map(|w| w.value.clone()) else {
                let at = tokens.get(2).map_or(end, |t| t.span.start);
                return Err(syntax_at(at, "REBUILD needs the name of a view", None));
            };
            expect_end(&tokens, 3)?;
            return Ok(Statement::Rebuild { kind, name });
        }
        Some("DROP") => {
            let kind = match tokens.get(1).and_then(upper).as_deref() {
                Some("TABLE") => ViewKind::Table,
                Some("STREAM") => ViewKind::Stream,
                _ => {
                    let at = tokens.get(1).map_or(end, |t| t.span.start);
                    return Err(syntax_at(at, "DROP takes TABLE or STREAM", None));
                }
            };
            let mut i = 2;
            let if_exists = tokens.get(i).and_then(upper).as_deref() == Some("IF")
                && tokens.get(i + 1).and_then(upper).as_deref() == Some("EXISTS");
            if if_exists {
                i += 2;
            }
            merge_hyphenated(&mut tokens, i);
            let Some(name) = tokens.get(i).and_then(word).map(|w| w.value.clone()) else {
                let at = tokens.get(i).map_or(end, |t| t.span.start);
                return Err(syntax_at(at, "DROP needs the name of a view", None));
            };
            // ksqlDB's `DROP TABLE t DELETE TOPIC`: the changelog topic goes with the view
            // here in any case.
            let mut j = i + 1;
            if tokens.get(j).and_then(upper).as_deref() == Some("DELETE")
                && tokens.get(j + 1).and_then(upper).as_deref() == Some("TOPIC")
            {
                j += 2;
            }
            expect_end(&tokens, j)?;
            return Ok(Statement::Drop { kind, name, if_exists });
        }
        _ => {}
    }
    // CREATE STREAM reads as CREATE TABLE to the parser; the kind is kept aside.
    let mut kind = ViewKind::Table;
    if upper(&tokens[0]).as_deref() == Some("CREATE") {
        let at = if tokens.get(1).and_then(upper).as_deref() == Some("OR") { 3 } else { 1 };
        if tokens.get(at).and_then(upper).as_deref() == Some("STREAM") {
            kind = ViewKind::Stream;
            tokens[at].token = Token::make_keyword("TABLE");
        }
    }
    let emit_changes = take_emit_changes(&mut tokens)?;
    let window = crate::window::take_window(&mut tokens)?;
    let as_of = take_as_of(&mut tokens)?;
    let mut i = 0;
    while i < tokens.len() {
        if matches!(word(&tokens[i]).map(|w| w.keyword), Some(Keyword::FROM | Keyword::JOIN)) {
            merge_hyphenated(&mut tokens, i + 1);
        }
        i += 1;
    }
    let dialect = GenericDialect {};
    let parsed = Parser::new(&dialect)
        .with_tokens_with_locations(tokens.clone())
        .parse_statement()
        .map_err(|e| parser_error(&e.to_string(), &tokens, end))?;
    let select = |query: Box<ast::Query>| Select { query, window, as_of, emit_changes };
    match parsed {
        ast::Statement::Query(query) => Ok(Statement::Query(select(query))),
        ast::Statement::CreateTable(ct) => {
            let Some(query) = ct.query else {
                return Err(SqlError::unsupported(
                    "CREATE TABLE needs AS SELECT: views are defined by a query over a topic (columns come from its events)",
                ));
            };
            if ct.or_replace {
                return Err(SqlError::unsupported("CREATE OR REPLACE is not supported: DROP the view, then CREATE it"));
            }
            if as_of.is_some() {
                return Err(SqlError::unsupported("AS OF applies to pull queries, not to CREATE"));
            }
            if emit_changes {
                return Err(SqlError::unsupported(
                    "EMIT CHANGES is for push queries; a view is maintained as its source changes",
                ));
            }
            Ok(Statement::Create { kind, name: object_name(&ct.name)?, if_not_exists: ct.if_not_exists, select: select(query) })
        }
        other => Err(SqlError::unsupported(format!(
            "{} is not a statement evident runs (CREATE TABLE|STREAM ... AS SELECT, SELECT, SHOW, DESCRIBE, DROP, EXPLAIN)",
            other.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ")
        ))),
    }
}

/// The one-part name of a view or source.
pub(crate) fn object_name(name: &ast::ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(ident)] => Ok(ident.value.clone()),
        _ => Err(SqlError::unsupported(format!("{name}: names have one part (no schema or catalog)"))),
    }
}

pub(crate) fn word(t: &TokenWithSpan) -> Option<&Word> {
    match &t.token {
        Token::Word(w) => Some(w),
        _ => None,
    }
}

fn is_word(t: Option<&TokenWithSpan>, text: &str) -> bool {
    t.and_then(word).is_some_and(|w| w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn expect_end(tokens: &[TokenWithSpan], from: usize) -> Result<()> {
    match tokens.get(from) {
        None => Ok(()),
        Some(t) => Err(syntax_at(t.span.start, &format!("unexpected {}", t.token), None)),
    }
}

pub(crate) fn syntax_at(at: Location, message: &str, hint: Option<&str>) -> SqlError {
    SqlError::Syntax { line: at.line, column: at.column, message: message.into(), hint: hint.map(str::to_string) }
}

/// Joins `name-part-part` starting at `i` into one quoted identifier when its parts touch (no
/// space between them), so a topic named with hyphens need not be quoted where a source is
/// expected.
fn merge_hyphenated(tokens: &mut Vec<TokenWithSpan>, i: usize) {
    let Some(first) = tokens.get(i).and_then(word).filter(|w| w.quote_style.is_none()).cloned() else {
        return;
    };
    let mut name = first.value.clone();
    let mut j = i + 1;
    let mut end = tokens[i].span.end;
    while tokens.get(j).is_some_and(|t| t.token == Token::Minus && t.span.start == end) {
        let Some(next) = tokens.get(j + 1).filter(|t| t.span.start == tokens[j].span.end) else { break };
        let part = match &next.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.clone(),
            Token::Number(n, false) if n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => n.clone(),
            _ => break,
        };
        name.push('-');
        name.push_str(&part);
        end = next.span.end;
        j += 2;
    }
    if j > i + 1 {
        let span = sqlparser::tokenizer::Span::new(tokens[i].span.start, end);
        tokens.splice(
            i..j,
            [TokenWithSpan::new(
                Token::Word(Word { value: name, quote_style: Some('"'), keyword: Keyword::NoKeyword }),
                span,
            )],
        );
    }
}

/// Removes a trailing `EMIT CHANGES`.
fn take_emit_changes(tokens: &mut Vec<TokenWithSpan>) -> Result<bool> {
    let n = tokens.len();
    if n >= 2 && is_word(tokens.get(n - 2), "EMIT") {
        if !is_word(tokens.get(n - 1), "CHANGES") {
            return Err(syntax_at(
                tokens[n - 1].span.start,
                "EMIT takes CHANGES",
                Some("EMIT FINAL (one row per closed window) is not supported"),
            ));
        }
        tokens.truncate(n - 2);
        return Ok(true);
    }
    // `EMIT CHANGES LIMIT n` (ksqlDB's order) reads as `LIMIT n EMIT CHANGES`.
    if let Some(i) =
        (0..n.saturating_sub(1)).find(|&i| is_word(tokens.get(i), "EMIT") && is_word(tokens.get(i + 1), "CHANGES"))
    {
        tokens.drain(i..i + 2);
        return Ok(true);
    }
    Ok(false)
}

/// Removes `AS OF SEQUENCE n` / `AS OF 'time'` / `AS OF TIMESTAMP 'time'`.
fn take_as_of(tokens: &mut Vec<TokenWithSpan>) -> Result<Option<AsOf>> {
    let Some(i) = (0..tokens.len()).find(|&i| is_word(tokens.get(i), "AS") && is_word(tokens.get(i + 1), "OF")) else {
        return Ok(None);
    };
    let mut j = i + 2;
    let at = tokens.get(j).map(|t| t.span.start).unwrap_or(tokens[i + 1].span.end);
    let hint = Some("AS OF SEQUENCE 1234 or AS OF '2026-12-01T00:00:00Z'");
    let as_of = if is_word(tokens.get(j), "SEQUENCE") {
        j += 1;
        match tokens.get(j).map(|t| &t.token) {
            Some(Token::Number(n, false)) => {
                let seq = n.parse::<u64>().map_err(|_| syntax_at(at, "AS OF SEQUENCE needs a whole number", hint))?;
                AsOf::Sequence(seq)
            }
            _ => return Err(syntax_at(at, "AS OF SEQUENCE needs a whole number", hint)),
        }
    } else {
        if is_word(tokens.get(j), "TIMESTAMP") {
            j += 1;
        }
        match tokens.get(j).map(|t| &t.token) {
            Some(Token::SingleQuotedString(s)) => {
                let ms = crate::functions::parse_time(s).map_err(|e| syntax_at(at, &format!("AS OF: {e}"), hint))?;
                AsOf::Time(ms)
            }
            _ => return Err(syntax_at(at, "AS OF needs SEQUENCE n or a quoted time", hint)),
        }
    };
    tokens.drain(i..=j);
    Ok(Some(as_of))
}

fn end_location(sql: &str) -> Location {
    let line = sql.lines().count().max(1) as u64;
    let column = sql.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
    Location { line, column }
}

/// Turns sqlparser's message into line, column and a hint.
fn parser_error(message: &str, tokens: &[TokenWithSpan], end: Location) -> SqlError {
    let message = message.trim_start_matches("sql parser error: ").to_string();
    // sqlparser ends its messages with " at Line: L, Column: C" when it knows where.
    let (text, at) = match message.rfind(" at Line: ") {
        Some(i) => {
            let loc = &message[i + " at Line: ".len()..];
            let mut parts = loc.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse().ok());
            let column = parts.next().and_then(|c| c.trim().parse().ok());
            match (line, column) {
                (Some(line), Some(column)) => (message[..i].to_string(), Location { line, column }),
                _ => (message.clone(), end),
            }
        }
        None => (message.clone(), end),
    };
    let hint = if text.ends_with("found: EOF") {
        Some("the statement ends too early".to_string())
    } else if tokens
        .first()
        .and_then(word)
        .is_some_and(|w| w.keyword == Keyword::INSERT || w.keyword == Keyword::UPDATE)
    {
        Some(
            "events are appended with Kafka producers or POST /v1/topics/{topic}/streams/{key}, not INSERT/UPDATE"
                .into(),
        )
    } else if text.contains("found: -") {
        Some("quote names that hold other characters than letters, digits, _ and - (\"my.topic\")".into())
    } else {
        None
    };
    SqlError::Syntax { line: at.line, column: at.column, message: text, hint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> (ViewKind, String, Select) {
        match parse(sql).unwrap() {
            Statement::Create { kind, name, select, .. } => (kind, name, select),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_seed_statement_parses_as_written() {
        let sql = "CREATE TABLE order_summary AS\nSELECT orderId, SUM(item_price) AS total\nFROM order-events\nGROUP BY orderId;";
        let (kind, name, select) = create(sql);
        assert_eq!(kind, ViewKind::Table);
        assert_eq!(name, "order_summary");
        assert!(select.query.to_string().contains("FROM \"order-events\""), "{}", select.query);
    }

    #[test]
    fn subtraction_outside_from_stays_subtraction() {
        let (_, _, select) = create("CREATE STREAM s AS SELECT a-b AS d FROM my-topic-2 WHERE x-1 > 0");
        let text = select.query.to_string();
        assert!(text.contains("a - b"), "{text}");
        assert!(text.contains("\"my-topic-2\""), "{text}");
        assert!(text.contains("x - 1"), "{text}");
        // With spaces, a minus is a minus even after FROM: never the source `a-b`.
        if let Ok(Statement::Query(s)) = parse("SELECT * FROM a - b") {
            assert!(!s.query.to_string().contains("\"a-b\""), "{}", s.query);
        }
    }

    #[test]
    fn ksql_clauses_are_taken_out() {
        let Statement::Query(s) = parse("SELECT * FROM order_summary AS OF SEQUENCE 42 WHERE total > 3").unwrap()
        else {
            panic!()
        };
        assert_eq!(s.as_of, Some(AsOf::Sequence(42)));
        let Statement::Query(s) = parse("SELECT * FROM v EMIT CHANGES;").unwrap() else { panic!() };
        assert!(s.emit_changes);
        let Statement::Query(s) = parse("SELECT * FROM v AS OF '2026-12-01T00:00:00Z'").unwrap() else { panic!() };
        assert_eq!(s.as_of, Some(AsOf::Time(1_796_083_200_000)));
        assert!(matches!(parse("SHOW TABLES").unwrap(), Statement::ShowViews(Some(ViewKind::Table))));
        assert!(matches!(parse("show streams;").unwrap(), Statement::ShowViews(Some(ViewKind::Stream))));
        assert!(matches!(parse("DESCRIBE order-summary").unwrap(), Statement::Describe(n) if n == "order-summary"));
        assert!(matches!(
            parse("DROP STREAM IF EXISTS s DELETE TOPIC").unwrap(),
            Statement::Drop { kind: ViewKind::Stream, if_exists: true, .. }
        ));
        assert!(matches!(parse("EXPLAIN SELECT * FROM v").unwrap(), Statement::Explain(_)));
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        match parse("SELECT a,\n  FROM t WHERE") {
            Err(SqlError::Syntax { line, column, .. }) => assert!(line >= 1 && column >= 1),
            other => panic!("{other:?}"),
        }
        match parse("SELECT a FROM t WHERE") {
            Err(SqlError::Syntax { hint: Some(h), .. }) => assert!(h.contains("too early")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("SELECT 1; SELECT 2"), Err(SqlError::Syntax { .. })));
        assert!(matches!(parse("  ;"), Err(SqlError::Syntax { .. })));
        assert!(matches!(parse("INSERT INTO t VALUES (1)"), Err(SqlError::Unsupported(_))));
        assert!(matches!(parse("SELECT * FROM v EMIT FINAL"), Err(SqlError::Syntax { .. })));
    }
}
