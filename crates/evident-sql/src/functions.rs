//! Scalar functions: their names (ksqlDB's, with the usual SQL aliases), argument counts and
//! types (checked when a statement is planned), result types, and evaluation. A function
//! given NULL returns NULL unless it exists to handle NULL (COALESCE, IFNULL, NULLIF).
//! Every function is deterministic: a view rebuilt from its source gives the same rows, so
//! there is no NOW() or RANDOM() (ROWTIME is the event's time).

use std::sync::Arc;

use crate::error::{Result, SqlError};
use crate::value::{SqlType, Value};

/// A scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// UPPER(s), UCASE.
    Upper,
    /// LOWER(s), LCASE.
    Lower,
    /// LEN(s), LENGTH, CHAR_LENGTH: characters.
    Len,
    /// TRIM(s).
    Trim,
    /// LTRIM(s).
    Ltrim,
    /// RTRIM(s).
    Rtrim,
    /// SUBSTRING(s, from [, len]), SUBSTR: 1-based.
    Substring,
    /// CONCAT(a, ...): NULLs are skipped (ksqlDB's rule).
    Concat,
    /// REPLACE(s, from, to).
    Replace,
    /// SPLIT(s, delimiter): an ARRAY.
    Split,
    /// INSTR(s, sub): 1-based position, 0 if absent.
    Instr,
    /// COALESCE(a, ...): the first non-NULL.
    Coalesce,
    /// IFNULL(a, b).
    IfNull,
    /// NULLIF(a, b).
    NullIf,
    /// ABS(x).
    Abs,
    /// ROUND(x [, digits]).
    Round,
    /// FLOOR(x).
    Floor,
    /// CEIL(x), CEILING.
    Ceil,
    /// SQRT(x).
    Sqrt,
    /// ARRAY_LENGTH(a), CARDINALITY.
    ArrayLength,
    /// ARRAY_CONTAINS(a, v).
    ArrayContains,
    /// TIMESTAMPTOSTRING(ms, pattern [, zone]): Java-style pattern (yyyy-MM-dd HH:mm:ss.SSS).
    TimestampToString,
    /// STRINGTOTIMESTAMP(s [, pattern]): ms since the epoch; RFC 3339 without a pattern.
    StringToTimestamp,
}

impl Func {
    /// The function named `name` (case-insensitive).
    pub fn lookup(name: &str) -> Option<Func> {
        Some(match name.to_ascii_uppercase().as_str() {
            "UPPER" | "UCASE" => Func::Upper,
            "LOWER" | "LCASE" => Func::Lower,
            "LEN" | "LENGTH" | "CHAR_LENGTH" => Func::Len,
            "TRIM" => Func::Trim,
            "LTRIM" => Func::Ltrim,
            "RTRIM" => Func::Rtrim,
            "SUBSTRING" | "SUBSTR" => Func::Substring,
            "CONCAT" => Func::Concat,
            "REPLACE" => Func::Replace,
            "SPLIT" => Func::Split,
            "INSTR" => Func::Instr,
            "COALESCE" => Func::Coalesce,
            "IFNULL" => Func::IfNull,
            "NULLIF" => Func::NullIf,
            "ABS" => Func::Abs,
            "ROUND" => Func::Round,
            "FLOOR" => Func::Floor,
            "CEIL" | "CEILING" => Func::Ceil,
            "SQRT" => Func::Sqrt,
            "ARRAY_LENGTH" | "CARDINALITY" => Func::ArrayLength,
            "ARRAY_CONTAINS" => Func::ArrayContains,
            "TIMESTAMPTOSTRING" | "FORMAT_TIMESTAMP" => Func::TimestampToString,
            "STRINGTOTIMESTAMP" | "PARSE_TIMESTAMP" => Func::StringToTimestamp,
            _ => return None,
        })
    }

    /// Checks the argument count and types; returns the result type.
    pub fn check(self, name: &str, args: &[SqlType]) -> Result<SqlType> {
        let n = args.len();
        let arity = |lo: usize, hi: usize| {
            if n < lo || n > hi {
                let want = if lo == hi {
                    format!("{lo}")
                } else if hi == usize::MAX {
                    format!("at least {lo}")
                } else {
                    format!("{lo} to {hi}")
                };
                Err(SqlError::invalid(format!("{name} takes {want} argument(s), not {n}")))
            } else {
                Ok(())
            }
        };
        let want = |i: usize, ok: &[SqlType], what: &str| -> Result<()> {
            match args.get(i) {
                Some(t) if *t == SqlType::Any || ok.contains(t) => Ok(()),
                Some(t) => Err(SqlError::invalid(format!("{name}: argument {} must be {what}, not {t}", i + 1))),
                None => Ok(()),
            }
        };
        let text = [SqlType::String];
        let num = [SqlType::Bigint, SqlType::Double];
        let int = [SqlType::Bigint];
        Ok(match self {
            Func::Upper | Func::Lower | Func::Trim | Func::Ltrim | Func::Rtrim => {
                arity(1, 1)?;
                want(0, &text, "a STRING")?;
                SqlType::String
            }
            Func::Len => {
                arity(1, 1)?;
                want(0, &text, "a STRING")?;
                SqlType::Bigint
            }
            Func::Substring => {
                arity(2, 3)?;
                want(0, &text, "a STRING")?;
                want(1, &int, "a BIGINT")?;
                want(2, &int, "a BIGINT")?;
                SqlType::String
            }
            Func::Concat => {
                arity(1, usize::MAX)?;
                SqlType::String
            }
            Func::Replace => {
                arity(3, 3)?;
                (0..3).try_for_each(|i| want(i, &text, "a STRING"))?;
                SqlType::String
            }
            Func::Split => {
                arity(2, 2)?;
                (0..2).try_for_each(|i| want(i, &text, "a STRING"))?;
                SqlType::Array
            }
            Func::Instr => {
                arity(2, 2)?;
                (0..2).try_for_each(|i| want(i, &text, "a STRING"))?;
                SqlType::Bigint
            }
            Func::Coalesce => {
                arity(1, usize::MAX)?;
                args.iter().fold(None, |acc, t| SqlType::unify(acc, Some(*t))).unwrap_or(SqlType::Any)
            }
            Func::IfNull => {
                arity(2, 2)?;
                SqlType::unify(Some(args[0]), Some(args[1])).unwrap_or(SqlType::Any)
            }
            Func::NullIf => {
                arity(2, 2)?;
                args[0]
            }
            Func::Abs | Func::Floor | Func::Ceil => {
                arity(1, 1)?;
                want(0, &num, "a number")?;
                args[0]
            }
            Func::Round => {
                arity(1, 2)?;
                want(0, &num, "a number")?;
                want(1, &int, "a BIGINT")?;
                if n == 2 {
                    SqlType::Double
                } else {
                    args[0]
                }
            }
            Func::Sqrt => {
                arity(1, 1)?;
                want(0, &num, "a number")?;
                SqlType::Double
            }
            Func::ArrayLength => {
                arity(1, 1)?;
                want(0, &[SqlType::Array], "an ARRAY")?;
                SqlType::Bigint
            }
            Func::ArrayContains => {
                arity(2, 2)?;
                want(0, &[SqlType::Array], "an ARRAY")?;
                SqlType::Boolean
            }
            Func::TimestampToString => {
                arity(2, 3)?;
                want(0, &int, "a BIGINT (ms since the epoch)")?;
                want(1, &text, "a STRING pattern")?;
                want(2, &text, "a STRING time zone")?;
                SqlType::String
            }
            Func::StringToTimestamp => {
                arity(1, 3)?;
                (0..n).try_for_each(|i| want(i, &text, "a STRING"))?;
                SqlType::Bigint
            }
        })
    }

    /// Evaluates the function. An argument of the wrong type at run time (a JSON field that
    /// held another type than planned) is an error the view parks the event for.
    pub fn call(self, args: &[Value]) -> Result<Value, String> {
        let null_in = args.iter().any(Value::is_null);
        if null_in && !matches!(self, Func::Coalesce | Func::IfNull | Func::NullIf | Func::Concat) {
            return Ok(Value::Null);
        }
        let s = |i: usize| -> Result<&str, String> {
            args[i].as_str().ok_or_else(|| format!("expected a STRING, got {}", args[i].to_json()))
        };
        let i64_at = |i: usize| -> Result<i64, String> {
            match &args[i] {
                Value::Int(v) => Ok(*v),
                other => Err(format!("expected a BIGINT, got {}", other.to_json())),
            }
        };
        Ok(match self {
            Func::Upper => Value::string(&s(0)?.to_uppercase()),
            Func::Lower => Value::string(&s(0)?.to_lowercase()),
            Func::Len => Value::Int(s(0)?.chars().count() as i64),
            Func::Trim => Value::string(s(0)?.trim()),
            Func::Ltrim => Value::string(s(0)?.trim_start()),
            Func::Rtrim => Value::string(s(0)?.trim_end()),
            Func::Substring => {
                let text = s(0)?;
                let len = text.chars().count() as i64;
                // 1-based; a negative start counts from the end (ksqlDB).
                let from = i64_at(1)?;
                let start = if from < 0 { (len + from).max(0) } else { (from - 1).max(0) };
                let take = if args.len() == 3 { i64_at(2)?.max(0) } else { len };
                Value::string(&text.chars().skip(start as usize).take(take as usize).collect::<String>())
            }
            Func::Concat => {
                let mut out = String::new();
                for a in args.iter().filter(|a| !a.is_null()) {
                    out.push_str(&a.to_text());
                }
                Value::string(&out)
            }
            Func::Replace => Value::string(&s(0)?.replace(s(1)?, s(2)?)),
            Func::Split => {
                let (text, delim) = (s(0)?, s(1)?);
                let parts: Vec<Value> = if delim.is_empty() {
                    text.chars().map(|c| Value::string(&c.to_string())).collect()
                } else {
                    text.split(delim).map(Value::string).collect()
                };
                Value::Array(Arc::new(parts))
            }
            Func::Instr => {
                let (text, sub) = (s(0)?, s(1)?);
                Value::Int(text.find(sub).map_or(0, |b| text[..b].chars().count() as i64 + 1))
            }
            Func::Coalesce => args.iter().find(|a| !a.is_null()).cloned().unwrap_or(Value::Null),
            Func::IfNull => {
                if args[0].is_null() {
                    args[1].clone()
                } else {
                    args[0].clone()
                }
            }
            Func::NullIf => {
                if args[0] == args[1] && !args[0].is_null() {
                    Value::Null
                } else {
                    args[0].clone()
                }
            }
            Func::Abs => match &args[0] {
                Value::Int(v) => Value::Int(v.checked_abs().ok_or("ABS overflows BIGINT")?),
                Value::Double(v) => Value::Double(v.abs()),
                other => return Err(format!("ABS of {}", other.to_json())),
            },
            Func::Floor | Func::Ceil => match &args[0] {
                Value::Int(v) => Value::Int(*v),
                Value::Double(v) => Value::Double(if self == Func::Floor { v.floor() } else { v.ceil() }),
                other => return Err(format!("FLOOR/CEIL of {}", other.to_json())),
            },
            Func::Round => {
                let digits = if args.len() == 2 { i64_at(1)? } else { 0 };
                match (&args[0], args.len()) {
                    (Value::Int(v), 1) => Value::Int(*v),
                    (v, _) => {
                        let x = v.as_f64().ok_or_else(|| format!("ROUND of {}", v.to_json()))?;
                        let scale = 10f64.powi(digits.clamp(-300, 300) as i32);
                        Value::Double((x * scale).round() / scale)
                    }
                }
            }
            Func::Sqrt => Value::Double(args[0].as_f64().ok_or("SQRT of a non-number")?.sqrt()),
            Func::ArrayLength => match &args[0] {
                Value::Array(a) => Value::Int(a.len() as i64),
                other => return Err(format!("ARRAY_LENGTH of {}", other.to_json())),
            },
            Func::ArrayContains => match &args[0] {
                Value::Array(a) => Value::Bool(a.iter().any(|v| v == &args[1])),
                other => return Err(format!("ARRAY_CONTAINS of {}", other.to_json())),
            },
            Func::TimestampToString => {
                let ms = i64_at(0)?;
                let zone = if args.len() == 3 { s(2)? } else { "UTC" };
                Value::string(&format_time(ms, s(1)?, zone)?)
            }
            Func::StringToTimestamp => {
                let text = s(0)?;
                let ms = if args.len() == 1 {
                    parse_time(text)?
                } else {
                    let zone = if args.len() == 3 { s(2)? } else { "UTC" };
                    parse_time_pattern(text, s(1)?, zone)?
                };
                Value::Int(ms)
            }
        })
    }
}

/// Reads an RFC 3339 time (`2026-12-01T10:00:00Z`, with an offset or fraction) or a date
/// (`2026-12-01`, midnight UTC) as ms since the epoch.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        let zoned = date.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| e.to_string())?;
        return Ok(zoned.timestamp().as_millisecond());
    }
    Err(format!("{text:?} is not an RFC 3339 time (2026-12-01T10:00:00Z) or a date (2026-12-01)"))
}

/// Java's DateTimeFormatter letters (as ksqlDB takes them) turned into strftime's.
fn strftime_pattern(java: &str) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = java.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        match (c, n) {
            ('\'', _) => {
                // Quoted literal text up to the next quote.
                let end = chars[i + 1..].iter().position(|&x| x == '\'').map(|p| i + 1 + p);
                let Some(end) = end else { return Err("unclosed ' in the pattern".into()) };
                out.extend(chars[i + 1..end].iter());
                i = end + 1;
                continue;
            }
            ('y', 4) | ('u', 4) => out.push_str("%Y"),
            ('y', 2) => out.push_str("%y"),
            ('M', 2) => out.push_str("%m"),
            ('M', 3) => out.push_str("%b"),
            ('d', 2) => out.push_str("%d"),
            ('H', 2) => out.push_str("%H"),
            ('h', 2) => out.push_str("%I"),
            ('m', 2) => out.push_str("%M"),
            ('s', 2) => out.push_str("%S"),
            ('S', 3) => out.push_str("%3f"),
            ('a', 1) => out.push_str("%p"),
            ('X', _) | ('x', _) | ('Z', _) => out.push_str("%:z"),
            ('E', 3) => out.push_str("%a"),
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "pattern letter {:?} is not supported (yyyy MM dd HH hh mm ss SSS a X E)",
                    c.to_string().repeat(n)
                ))
            }
            ('%', _) => out.push_str(&"%%".repeat(n)),
            (c, _) => out.extend(std::iter::repeat_n(c, n)),
        }
        i += n;
    }
    Ok(out)
}

fn zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|e| format!("time zone {name:?}: {e}"))
}

fn format_time(ms: i64, pattern: &str, zone_name: &str) -> Result<String, String> {
    let ts = jiff::Timestamp::from_millisecond(ms).map_err(|e| e.to_string())?;
    let fmt = strftime_pattern(pattern)?;
    Ok(ts.to_zoned(zone(zone_name)?).strftime(&fmt).to_string())
}

fn parse_time_pattern(text: &str, pattern: &str, zone_name: &str) -> Result<i64, String> {
    let fmt = strftime_pattern(pattern)?;
    let tm = jiff::fmt::strtime::BrokenDownTime::parse(&fmt, text)
        .map_err(|e| format!("{text:?} does not match {pattern:?}: {e}"))?;
    if tm.offset().is_some() {
        return tm.to_timestamp().map(|t| t.as_millisecond()).map_err(|e| e.to_string());
    }
    let dt = tm.to_datetime().map_err(|e| format!("{text:?}: {e}"))?;
    let zoned = dt.to_zoned(zone(zone_name)?).map_err(|e| e.to_string())?;
    Ok(zoned.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_functions() {
        let s = |x: &str| Value::string(x);
        assert_eq!(Func::Upper.call(&[s("abc")]).unwrap(), s("ABC"));
        assert_eq!(Func::Substring.call(&[s("hello"), Value::Int(2), Value::Int(3)]).unwrap(), s("ell"));
        assert_eq!(Func::Substring.call(&[s("hello"), Value::Int(-3)]).unwrap(), s("llo"));
        assert_eq!(Func::Concat.call(&[s("a"), Value::Null, Value::Int(1)]).unwrap(), s("a1"));
        assert_eq!(Func::Instr.call(&[s("héllo"), s("l")]).unwrap(), Value::Int(3));
        assert!(Func::Upper.call(&[Value::Null]).unwrap().is_null());
        assert!(Func::Upper.call(&[Value::Int(1)]).is_err());
        assert_eq!(Func::Coalesce.call(&[Value::Null, Value::Int(2)]).unwrap(), Value::Int(2));
    }

    #[test]
    fn types_are_checked_when_planned() {
        assert!(Func::Upper.check("UPPER", &[SqlType::Bigint]).is_err());
        assert!(Func::Upper.check("UPPER", &[SqlType::Any]).is_ok());
        assert!(Func::Substring.check("SUBSTRING", &[SqlType::String]).is_err());
    }

    #[test]
    fn times_format_and_parse() {
        let ms = parse_time("2026-12-01T10:30:00Z").unwrap();
        assert_eq!(format_time(ms, "yyyy-MM-dd HH:mm:ss", "UTC").unwrap(), "2026-12-01 10:30:00");
        assert_eq!(parse_time_pattern("2026-12-01 10:30:00", "yyyy-MM-dd HH:mm:ss", "UTC").unwrap(), ms);
        assert_eq!(parse_time("2026-12-01").unwrap(), 1_796_083_200_000);
        assert!(parse_time("yesterday").is_err());
        assert!(strftime_pattern("yyyy QQ").is_err());
    }
}
