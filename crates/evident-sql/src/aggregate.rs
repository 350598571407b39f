//! Aggregate functions, kept incrementally: each group holds one accumulator per aggregate,
//! updated by every event of the group and never recomputed from the history. An
//! accumulator's whole state (AVG's sum and count, COUNT(DISTINCT)'s set) is written with the
//! row into the view's changelog, so a restart restores it exactly. Sources are streams of
//! events (inserts only), so no aggregate needs to retract a value.
//!
//! NULL arguments are skipped, as SQL says (COUNT(*) counts rows). SUM of BIGINT is checked:
//! an overflow parks the event instead of wrapping. COLLECT_LIST and COLLECT_SET keep at most
//! [`COLLECT_LIMIT`] values (ksqlDB's default limit), COUNT(DISTINCT) at most
//! [`DISTINCT_LIMIT`]: state a peer's events can grow is bounded.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::error::{Result, SqlError};
use crate::value::{SqlType, Value};

/// Most values COLLECT_LIST / COLLECT_SET keep per group (later ones are not added).
pub const COLLECT_LIMIT: usize = 1000;
/// Most distinct values COUNT(DISTINCT) tracks per group; past it, the event is parked.
pub const DISTINCT_LIMIT: usize = 100_000;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// COUNT(*) or COUNT(x).
    Count,
    /// COUNT(DISTINCT x).
    CountDistinct,
    /// SUM(x).
    Sum,
    /// AVG(x).
    Avg,
    /// MIN(x).
    Min,
    /// MAX(x).
    Max,
    /// EARLIEST_BY_OFFSET(x): the first non-NULL value in source order.
    Earliest,
    /// LATEST_BY_OFFSET(x): the last non-NULL value in source order.
    Latest,
    /// COLLECT_LIST(x).
    CollectList,
    /// COLLECT_SET(x).
    CollectSet,
}

impl AggKind {
    /// The aggregate named `name` (case-insensitive).
    pub fn lookup(name: &str) -> Option<AggKind> {
        Some(match name.to_ascii_uppercase().as_str() {
            "COUNT" => AggKind::Count,
            "SUM" => AggKind::Sum,
            "AVG" => AggKind::Avg,
            "MIN" => AggKind::Min,
            "MAX" => AggKind::Max,
            "EARLIEST_BY_OFFSET" => AggKind::Earliest,
            "LATEST_BY_OFFSET" => AggKind::Latest,
            "COLLECT_LIST" => AggKind::CollectList,
            "COLLECT_SET" => AggKind::CollectSet,
            _ => return None,
        })
    }

    /// The result type for an argument of type `arg` (None: COUNT(*)); refuses what cannot
    /// be aggregated (SUM of a STRING).
    pub fn result_type(self, name: &str, arg: Option<SqlType>) -> Result<SqlType> {
        let arg_ty = arg.unwrap_or(SqlType::Any);
        let numeric = || {
            if arg_ty.numeric() {
                Ok(())
            } else {
                Err(SqlError::invalid(format!("{name} needs a number, not a {arg_ty}")))
            }
        };
        Ok(match self {
            AggKind::Count | AggKind::CountDistinct => SqlType::Bigint,
            AggKind::Sum => {
                numeric()?;
                arg_ty
            }
            AggKind::Avg => {
                numeric()?;
                SqlType::Double
            }
            AggKind::Min | AggKind::Max => {
                if matches!(arg_ty, SqlType::Array | SqlType::Struct) {
                    return Err(SqlError::invalid(format!("{name} needs a number, STRING or BOOLEAN, not a {arg_ty}")));
                }
                arg_ty
            }
            AggKind::Earliest | AggKind::Latest => arg_ty,
            AggKind::CollectList | AggKind::CollectSet => SqlType::Array,
        })
    }

    /// A fresh accumulator.
    pub fn start(self) -> Acc {
        match self {
            AggKind::Count => Acc::Count(0),
            AggKind::CountDistinct => Acc::Distinct(BTreeSet::new()),
            AggKind::Sum => Acc::Sum(Value::Null),
            AggKind::Avg => Acc::Avg { sum: 0.0, count: 0 },
            AggKind::Min | AggKind::Max | AggKind::Earliest | AggKind::Latest => Acc::One(Value::Null),
            AggKind::CollectList => Acc::List(Vec::new()),
            AggKind::CollectSet => Acc::Set(BTreeSet::new()),
        }
    }
}

/// One aggregate's state in one group.
#[derive(Debug, Clone, PartialEq)]
pub enum Acc {
    /// COUNT.
    Count(i64),
    /// COUNT(DISTINCT).
    Distinct(BTreeSet<Value>),
    /// SUM: NULL until a value arrives; BIGINT or DOUBLE after.
    Sum(Value),
    /// AVG.
    Avg {
        /// Sum of the values.
        sum: f64,
        /// How many.
        count: i64,
    },
    /// MIN, MAX, EARLIEST_BY_OFFSET, LATEST_BY_OFFSET.
    One(Value),
    /// COLLECT_LIST.
    List(Vec<Value>),
    /// COLLECT_SET.
    Set(BTreeSet<Value>),
}

impl Acc {
    /// Adds one row's argument (`None`: COUNT(*)).
    pub fn update(&mut self, kind: AggKind, arg: Option<&Value>) -> Result<(), String> {
        let Some(v) = arg else {
            if let Acc::Count(n) = self {
                *n += 1;
            }
            return Ok(());
        };
        if v.is_null() {
            return Ok(());
        }
        match (self, kind) {
            (Acc::Count(n), _) => *n += 1,
            (Acc::Distinct(set), _) => {
                if set.len() >= DISTINCT_LIMIT && !set.contains(v) {
                    return Err(format!("COUNT(DISTINCT) holds {DISTINCT_LIMIT} values for this group, its limit"));
                }
                set.insert(v.clone());
            }
            (Acc::Sum(sum), _) => {
                *sum = match (&*sum, v) {
                    (Value::Null, Value::Int(_) | Value::Double(_)) => v.clone(),
                    (Value::Int(a), Value::Int(b)) => {
                        Value::Int(a.checked_add(*b).ok_or_else(|| format!("SUM overflows BIGINT ({a} + {b})"))?)
                    }
                    (a, b) => match (a.as_f64(), b.as_f64()) {
                        (Some(x), Some(y)) => Value::Double(x + y),
                        _ => return Err(format!("SUM of {}", v.to_json())),
                    },
                };
            }
            (Acc::Avg { sum, count }, _) => {
                let x = v.as_f64().ok_or_else(|| format!("AVG of {}", v.to_json()))?;
                *sum += x;
                *count += 1;
            }
            (Acc::One(cur), kind) => {
                if matches!(v, Value::Array(_) | Value::Struct(_)) && matches!(kind, AggKind::Min | AggKind::Max) {
                    return Err(format!("{kind:?} of {}", v.to_json()));
                }
                let replace = match kind {
                    AggKind::Min => cur.is_null() || v < cur,
                    AggKind::Max => cur.is_null() || v > cur,
                    AggKind::Earliest => cur.is_null(),
                    _ => true,
                };
                if replace {
                    *cur = v.clone();
                }
            }
            (Acc::List(items), _) => {
                if items.len() < COLLECT_LIMIT {
                    items.push(v.clone());
                }
            }
            (Acc::Set(items), _) => {
                if items.len() < COLLECT_LIMIT {
                    items.insert(v.clone());
                }
            }
        }
        Ok(())
    }

    /// Folds `later` (the state of the same aggregate over later events) into this one:
    /// session windows merge when an event bridges two.
    pub fn merge(&mut self, kind: AggKind, later: &Acc) -> Result<(), String> {
        match (self, later) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::Avg { sum, count }, Acc::Avg { sum: s, count: c }) => {
                *sum += s;
                *count += c;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) | (Acc::Set(a), Acc::Set(b)) => {
                for v in b {
                    if a.len() >= DISTINCT_LIMIT {
                        break;
                    }
                    a.insert(v.clone());
                }
            }
            (Acc::List(a), Acc::List(b)) => a.extend(b.iter().take(COLLECT_LIMIT.saturating_sub(a.len())).cloned()),
            (me @ (Acc::Sum(_) | Acc::One(_)), Acc::Sum(v) | Acc::One(v)) => {
                if matches!(kind, AggKind::Earliest) && !matches!(me, Acc::One(Value::Null)) {
                    return Ok(());
                }
                me.update(kind, Some(v))?;
            }
            (a, b) => return Err(format!("cannot merge {a:?} with {b:?}")),
        }
        Ok(())
    }

    /// The aggregate's value.
    pub fn result(&self) -> Value {
        match self {
            Acc::Count(n) => Value::Int(*n),
            Acc::Distinct(set) => Value::Int(set.len() as i64),
            Acc::Sum(v) | Acc::One(v) => v.clone(),
            Acc::Avg { count: 0, .. } => Value::Null,
            Acc::Avg { sum, count } => Value::Double(sum / *count as f64),
            Acc::List(items) => Value::Array(Arc::new(items.clone())),
            Acc::Set(items) => Value::Array(Arc::new(items.iter().cloned().collect())),
        }
    }

    /// The whole state as a value (for the changelog).
    pub fn to_state(&self) -> Value {
        match self {
            Acc::Avg { sum, count } => Value::Array(Arc::new(vec![Value::Double(*sum), Value::Int(*count)])),
            Acc::Distinct(set) => Value::Array(Arc::new(set.iter().cloned().collect())),
            other => other.result(),
        }
    }

    /// Reads back [`Acc::to_state`].
    pub fn from_state(kind: AggKind, state: &Value) -> Result<Acc, String> {
        let bad = || format!("{kind:?} state {} cannot be read", state.to_json());
        Ok(match kind {
            AggKind::Count => Acc::Count(match state {
                Value::Int(n) => *n,
                _ => return Err(bad()),
            }),
            AggKind::Sum => Acc::Sum(state.clone()),
            AggKind::Min | AggKind::Max | AggKind::Earliest | AggKind::Latest => Acc::One(state.clone()),
            AggKind::Avg => match state {
                Value::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                    (s, Value::Int(c)) => Acc::Avg { sum: s.as_f64().ok_or_else(bad)?, count: *c },
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            },
            AggKind::CountDistinct | AggKind::CollectSet | AggKind::CollectList => {
                let Value::Array(items) = state else { return Err(bad()) };
                match kind {
                    AggKind::CollectList => Acc::List(items.to_vec()),
                    AggKind::CollectSet => Acc::Set(items.iter().cloned().collect()),
                    _ => Acc::Distinct(items.iter().cloned().collect()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: AggKind, values: &[Value]) -> Acc {
        let mut acc = kind.start();
        for v in values {
            acc.update(kind, Some(v)).unwrap();
        }
        acc
    }

    #[test]
    fn aggregates_skip_nulls_and_round_trip_their_state() {
        let vals = [Value::Int(3), Value::Null, Value::Int(1), Value::Int(3)];
        for (kind, want) in [
            (AggKind::Count, Value::Int(3)),
            (AggKind::CountDistinct, Value::Int(2)),
            (AggKind::Sum, Value::Int(7)),
            (AggKind::Avg, Value::Double(7.0 / 3.0)),
            (AggKind::Min, Value::Int(1)),
            (AggKind::Max, Value::Int(3)),
            (AggKind::Earliest, Value::Int(3)),
            (AggKind::Latest, Value::Int(3)),
        ] {
            let acc = run(kind, &vals);
            assert_eq!(acc.result(), want, "{kind:?}");
            assert_eq!(Acc::from_state(kind, &acc.to_state()).unwrap(), acc, "{kind:?}");
        }
        assert!(run(AggKind::Sum, &[Value::Null]).result().is_null());
        assert!(run(AggKind::Avg, &[]).result().is_null());
    }

    #[test]
    fn sum_overflow_is_an_error_and_mixed_numbers_sum_as_double() {
        let mut acc = run(AggKind::Sum, &[Value::Int(i64::MAX)]);
        assert!(acc.update(AggKind::Sum, Some(&Value::Int(1))).is_err());
        assert_eq!(acc.result(), Value::Int(i64::MAX));
        assert_eq!(run(AggKind::Sum, &[Value::Int(1), Value::Double(0.5)]).result(), Value::Double(1.5));
        assert!(AggKind::Sum.result_type("SUM", Some(SqlType::String)).is_err());
    }

    #[test]
    fn merge_equals_one_pass() {
        let (a, b) = ([Value::Int(5), Value::Int(2)], [Value::Int(9), Value::Int(2)]);
        let all: Vec<Value> = a.iter().chain(b.iter()).cloned().collect();
        for kind in [
            AggKind::Count,
            AggKind::CountDistinct,
            AggKind::Sum,
            AggKind::Avg,
            AggKind::Min,
            AggKind::Max,
            AggKind::Earliest,
            AggKind::Latest,
            AggKind::CollectList,
            AggKind::CollectSet,
        ] {
            let mut left = run(kind, &a);
            left.merge(kind, &run(kind, &b)).unwrap();
            assert_eq!(left.result(), run(kind, &all).result(), "{kind:?}");
        }
    }

    #[test]
    fn collect_is_bounded() {
        let vals: Vec<Value> = (0..COLLECT_LIMIT as i64 + 10).map(Value::Int).collect();
        let Value::Array(items) = run(AggKind::CollectList, &vals).result() else { panic!() };
        assert_eq!(items.len(), COLLECT_LIMIT);
    }
}
