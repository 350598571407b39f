//! Expressions: compiled once from the parser's tree into a small tree over row slots, typed
//! at compile time (so `SUM(name)` of a STRING column, or `'a' + 1`, is refused before a view
//! exists), and evaluated per row without allocation on the common paths.
//!
//! A [`Scope`] says what names mean where the expression is compiled: a source's columns (JSON
//! fields and pseudo-columns), a grouped query's keys and aggregates, or a view's columns.
//! Semantics follow SQL: NULL propagates through operators, comparisons of NULL are NULL, AND
//! and OR are three-valued, WHERE keeps a row only when its condition is TRUE. Integer
//! arithmetic is checked (an overflow is an error for the event, never a wrapped number);
//! division by zero gives NULL (as ksqlDB does).

use std::cmp::Ordering;
use std::sync::Arc;

use sqlparser::ast;

use crate::error::{Result, SqlError};
use crate::functions::Func;
use crate::value::{SqlType, Value};

/// A compiled expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// The value in slot `n` of the row.
    Slot(usize),
    /// A constant.
    Literal(Value),
    /// NOT.
    Not(Box<Expr>),
    /// Unary minus.
    Neg(Box<Expr>),
    /// Arithmetic, comparison or concatenation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// AND (three-valued).
    And(Box<Expr>, Box<Expr>),
    /// OR (three-valued).
    Or(Box<Expr>, Box<Expr>),
    /// IS [NOT] NULL.
    IsNull(Box<Expr>, bool),
    /// [NOT] IN (list).
    InList(Box<Expr>, Vec<Expr>, bool),
    /// [NOT] BETWEEN low AND high.
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// [NOT] LIKE pattern (`%` any run, `_` one character), case-insensitive with ILIKE.
    Like(Box<Expr>, Box<Expr>, bool, bool),
    /// CASE.
    Case(Option<Box<Expr>>, Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// CAST(x AS type).
    Cast(Box<Expr>, SqlType),
    /// A scalar function.
    Call(Func, Vec<Expr>),
    /// A STRUCT's field (`a.b`, `a->b`).
    Field(Box<Expr>, Arc<str>),
    /// `a[i]`: an ARRAY's element (1-based; negative from the end) or a STRUCT's field.
    Index(Box<Expr>, Box<Expr>),
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// +
    Add,
    /// -
    Sub,
    /// *
    Mul,
    /// /
    Div,
    /// %
    Mod,
    /// ||
    Concat,
    /// =
    Eq,
    /// <>, !=
    Ne,
    /// <
    Lt,
    /// <=
    Le,
    /// >
    Gt,
    /// >=
    Ge,
}

/// A compiled expression and its type.
#[derive(Debug, Clone)]
pub struct Typed {
    /// The expression.
    pub expr: Expr,
    /// Its type.
    pub ty: SqlType,
}

/// What names mean where an expression is compiled.
pub trait Scope {
    /// Called first on every node: Some when the scope gives the whole expression a meaning
    /// (a GROUP BY expression, an aggregate call).
    fn whole(&mut self, _e: &ast::Expr) -> Result<Option<Typed>> {
        Ok(None)
    }
    /// A column reference, by its name parts (`a`, `a.b`, `s.a.b`).
    fn column(&mut self, parts: &[String]) -> Result<Typed>;
    /// A function that is not a scalar function (an aggregate where none is allowed).
    fn unknown_function(&mut self, name: &str) -> SqlError {
        if crate::aggregate::AggKind::lookup(name).is_some() {
            SqlError::invalid(format!(
                "aggregate {name} is not allowed here (aggregates go in the SELECT list or HAVING of a GROUP BY query)"
            ))
        } else {
            SqlError::invalid(format!("unknown function {name}"))
        }
    }
}

/// Compiles `e` in `scope`.
pub fn compile(e: &ast::Expr, scope: &mut dyn Scope) -> Result<Typed> {
    if let Some(t) = scope.whole(e)? {
        return Ok(t);
    }
    use ast::Expr as A;
    let typed = |expr: Expr, ty: SqlType| Ok(Typed { expr, ty });
    match e {
        A::Identifier(id) => scope.column(std::slice::from_ref(&id.value)),
        A::CompoundIdentifier(ids) => scope.column(&ids.iter().map(|i| i.value.clone()).collect::<Vec<_>>()),
        A::Nested(inner) => compile(inner, scope),
        A::Value(v) => literal(&v.value),
        A::UnaryOp { op, expr } => {
            let inner = compile(expr, scope)?;
            match op {
                ast::UnaryOperator::Not => {
                    want_bool(&inner, "NOT")?;
                    typed(Expr::Not(Box::new(inner.expr)), SqlType::Boolean)
                }
                ast::UnaryOperator::Minus => {
                    want_num(&inner, "unary -")?;
                    typed(Expr::Neg(Box::new(inner.expr)), inner.ty)
                }
                ast::UnaryOperator::Plus => {
                    want_num(&inner, "unary +")?;
                    Ok(inner)
                }
                other => Err(SqlError::unsupported(format!("operator {other} is not supported"))),
            }
        }
        A::BinaryOp { left, op, right } => binary(left, op, right, scope),
        A::IsNull(x) | A::IsNotNull(x) => {
            let inner = compile(x, scope)?;
            typed(Expr::IsNull(Box::new(inner.expr), matches!(e, A::IsNotNull(_))), SqlType::Boolean)
        }
        A::In { expr, target: ast::InTarget::List(list), negated, .. } => {
            let x = compile(expr, scope)?;
            let mut items = Vec::with_capacity(list.len());
            for item in list {
                let t = compile(item, scope)?;
                comparable(&x, &t, "IN")?;
                items.push(t.expr);
            }
            typed(Expr::InList(Box::new(x.expr), items, *negated), SqlType::Boolean)
        }
        A::Between { expr, negated, low, high } => {
            let (x, lo, hi) = (compile(expr, scope)?, compile(low, scope)?, compile(high, scope)?);
            comparable(&x, &lo, "BETWEEN")?;
            comparable(&x, &hi, "BETWEEN")?;
            typed(Expr::Between(Box::new(x.expr), Box::new(lo.expr), Box::new(hi.expr), *negated), SqlType::Boolean)
        }
        A::Like { negated, expr, pattern, escape_char: None, any: false }
        | A::ILike { negated, expr, pattern, escape_char: None, any: false } => {
            let (x, p) = (compile(expr, scope)?, compile(pattern, scope)?);
            want_type(&x, SqlType::String, "LIKE")?;
            want_type(&p, SqlType::String, "LIKE")?;
            let insensitive = matches!(e, A::ILike { .. });
            typed(Expr::Like(Box::new(x.expr), Box::new(p.expr), *negated, insensitive), SqlType::Boolean)
        }
        A::Case { operand, conditions, else_result, .. } => {
            let operand = operand.as_ref().map(|o| compile(o, scope)).transpose()?;
            let mut whens = Vec::new();
            let mut ty = None;
            for c in conditions {
                let cond = compile(&c.condition, scope)?;
                match &operand {
                    Some(o) => comparable(o, &cond, "CASE")?,
                    None => want_bool(&cond, "CASE WHEN")?,
                }
                let result = compile(&c.result, scope)?;
                ty = SqlType::unify(ty, nullable_ty(&result));
                whens.push((cond.expr, result.expr));
            }
            let else_ = else_result.as_ref().map(|x| compile(x, scope)).transpose()?;
            if let Some(x) = &else_ {
                ty = SqlType::unify(ty, nullable_ty(x));
            }
            typed(
                Expr::Case(operand.map(|o| Box::new(o.expr)), whens, else_.map(|x| Box::new(x.expr))),
                ty.unwrap_or(SqlType::Any),
            )
        }
        A::Cast { expr, data_type, kind: ast::CastKind::Cast | ast::CastKind::DoubleColon, format: None } => {
            let inner = compile(expr, scope)?;
            let ty = cast_type(data_type)?;
            typed(Expr::Cast(Box::new(inner.expr), ty), ty)
        }
        A::Function(f) => function(f, scope),
        A::Substring { expr, substring_from, substring_for, .. } => {
            let mut args = vec![compile(expr, scope)?];
            args.push(match substring_from {
                Some(f) => compile(f, scope)?,
                None => Typed { expr: Expr::Literal(Value::Int(1)), ty: SqlType::Bigint },
            });
            if let Some(f) = substring_for {
                args.push(compile(f, scope)?);
            }
            call(Func::Substring, "SUBSTRING", args)
        }
        A::Trim { expr, trim_where: None, trim_what: None, trim_characters: None } => {
            call(Func::Trim, "TRIM", vec![compile(expr, scope)?])
        }
        A::Ceil { expr, field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) } => {
            call(Func::Ceil, "CEIL", vec![compile(expr, scope)?])
        }
        A::Floor { expr, field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) } => {
            call(Func::Floor, "FLOOR", vec![compile(expr, scope)?])
        }
        A::CompoundFieldAccess { root, access_chain } => {
            let cur = compile(root, scope)?;
            access(cur, access_chain, scope)
        }
        other => Err(SqlError::unsupported(format!("expression {other} is not supported"))),
    }
}

/// Applies `.field` and `[index]` accesses in order.
fn access(mut cur: Typed, chain: &[ast::AccessExpr], scope: &mut dyn Scope) -> Result<Typed> {
    for a in chain {
        cur = match a {
            ast::AccessExpr::Dot(ast::Expr::Identifier(id)) => field(cur, &id.value)?,
            ast::AccessExpr::Subscript(ast::Subscript::Index { index }) => {
                let i = compile(index, scope)?;
                if !matches!(cur.ty, SqlType::Array | SqlType::Struct | SqlType::Any) {
                    return Err(SqlError::invalid(format!("cannot index a {} with [...]", cur.ty)));
                }
                Typed { expr: Expr::Index(Box::new(cur.expr), Box::new(i.expr)), ty: SqlType::Any }
            }
            other => return Err(SqlError::unsupported(format!("access {other} is not supported"))),
        };
    }
    Ok(cur)
}

fn nullable_ty(t: &Typed) -> Option<SqlType> {
    match t.expr {
        Expr::Literal(Value::Null) => None,
        _ => Some(t.ty),
    }
}

fn field(cur: Typed, name: &str) -> Result<Typed> {
    if !matches!(cur.ty, SqlType::Struct | SqlType::Any) {
        return Err(SqlError::invalid(format!("cannot take field {name:?} of a {}", cur.ty)));
    }
    Ok(Typed { expr: Expr::Field(Box::new(cur.expr), Arc::from(name)), ty: SqlType::Any })
}

fn call(func: Func, name: &str, args: Vec<Typed>) -> Result<Typed> {
    let types: Vec<SqlType> = args.iter().map(|a| nullable_ty(a).unwrap_or(SqlType::Any)).collect();
    let ty = func.check(name, &types)?;
    Ok(Typed { expr: Expr::Call(func, args.into_iter().map(|a| a.expr).collect()), ty })
}

/// The arguments of a function call as expressions (`*` and named arguments refused).
pub(crate) fn function_args(f: &ast::Function) -> Result<(Vec<&ast::Expr>, bool)> {
    let name = f.name.to_string();
    if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
        return Err(SqlError::unsupported(format!("{name}: FILTER, OVER and WITHIN GROUP are not supported")));
    }
    match &f.args {
        ast::FunctionArguments::None => Ok((Vec::new(), false)),
        ast::FunctionArguments::Subquery(_) => {
            Err(SqlError::unsupported(format!("{name}: subqueries are not supported")))
        }
        ast::FunctionArguments::List(list) => {
            let distinct = matches!(list.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct));
            if !list.clauses.is_empty() {
                return Err(SqlError::unsupported(format!("{name}: clauses inside the call are not supported")));
            }
            let mut out = Vec::new();
            for a in &list.args {
                match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => out.push(e),
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard)
                        if out.is_empty() && list.args.len() == 1 => {}
                    other => return Err(SqlError::unsupported(format!("{name}: argument {other} is not supported"))),
                }
            }
            Ok((out, distinct))
        }
    }
}

fn function(f: &ast::Function, scope: &mut dyn Scope) -> Result<Typed> {
    let name = f.name.to_string().to_ascii_uppercase();
    let Some(func) = Func::lookup(&name) else {
        return Err(scope.unknown_function(&name));
    };
    let (args, distinct) = function_args(f)?;
    if distinct {
        return Err(SqlError::invalid(format!("DISTINCT applies to aggregates, not to {name}")));
    }
    let args = args.into_iter().map(|a| compile(a, scope)).collect::<Result<Vec<_>>>()?;
    call(func, &name, args)
}

fn literal(v: &ast::Value) -> Result<Typed> {
    let (value, ty) = match v {
        ast::Value::Number(n, _) => match n.parse::<i64>() {
            Ok(i) => (Value::Int(i), SqlType::Bigint),
            Err(_) => match n.parse::<f64>() {
                Ok(d) if d.is_finite() => (Value::Double(d), SqlType::Double),
                _ => return Err(SqlError::invalid(format!("number {n} is out of range"))),
            },
        },
        ast::Value::SingleQuotedString(s) => (Value::string(s), SqlType::String),
        ast::Value::Boolean(b) => (Value::Bool(*b), SqlType::Boolean),
        ast::Value::Null => (Value::Null, SqlType::Any),
        other => {
            return Err(SqlError::unsupported(format!(
                "literal {other} is not supported (use 'text', numbers, TRUE, FALSE, NULL)"
            )))
        }
    };
    Ok(Typed { expr: Expr::Literal(value), ty })
}

fn cast_type(t: &ast::DataType) -> Result<SqlType> {
    use ast::DataType as D;
    Ok(match t {
        D::BigInt(_) | D::Int(_) | D::Integer(_) | D::Int64 | D::SmallInt(_) | D::TinyInt(_) => SqlType::Bigint,
        D::Double(_)
        | D::DoublePrecision
        | D::Float(_)
        | D::Float64
        | D::Float8
        | D::Real
        | D::Decimal(_)
        | D::Numeric(_) => SqlType::Double,
        D::Varchar(_) | D::String(_) | D::Text | D::Char(_) | D::CharVarying(_) | D::Character(_) => SqlType::String,
        D::Boolean | D::Bool => SqlType::Boolean,
        other => {
            return Err(SqlError::unsupported(format!(
                "CAST to {other} is not supported (BIGINT, DOUBLE, STRING, BOOLEAN)"
            )))
        }
    })
}

fn want_type(t: &Typed, want: SqlType, what: &str) -> Result<()> {
    if t.ty == want || t.ty == SqlType::Any {
        Ok(())
    } else {
        Err(SqlError::invalid(format!("{what} needs a {want}, not a {}", t.ty)))
    }
}

fn want_bool(t: &Typed, what: &str) -> Result<()> {
    want_type(t, SqlType::Boolean, what)
}

fn want_num(t: &Typed, what: &str) -> Result<()> {
    if t.ty.numeric() {
        Ok(())
    } else {
        Err(SqlError::invalid(format!("{what} needs a number, not a {}", t.ty)))
    }
}

fn comparable(a: &Typed, b: &Typed, what: &str) -> Result<()> {
    let ok = a.ty == SqlType::Any || b.ty == SqlType::Any || a.ty == b.ty || (a.ty.numeric() && b.ty.numeric());
    if ok {
        Ok(())
    } else {
        Err(SqlError::invalid(format!("{what} compares a {} with a {}", a.ty, b.ty)))
    }
}

fn binary(left: &ast::Expr, op: &ast::BinaryOperator, right: &ast::Expr, scope: &mut dyn Scope) -> Result<Typed> {
    use ast::BinaryOperator as O;
    // `a->b` (ksqlDB's struct dereference) takes a field name on the right.
    if matches!(op, O::Arrow) {
        let base = compile(left, scope)?;
        return match right {
            ast::Expr::Identifier(id) => field(base, &id.value),
            // `a->b[1]` parses as `a -> (b[1])`: the field, then its accesses.
            ast::Expr::CompoundFieldAccess { root, access_chain } => match root.as_ref() {
                ast::Expr::Identifier(id) => access(field(base, &id.value)?, access_chain, scope),
                other => Err(SqlError::invalid(format!("-> takes a field name, not {other}"))),
            },
            other => Err(SqlError::invalid(format!("-> takes a field name, not {other}"))),
        };
    }
    let (l, r) = (compile(left, scope)?, compile(right, scope)?);
    let bin = |op: BinOp, ty: SqlType| {
        Ok(Typed { expr: Expr::Binary(op, Box::new(l.expr.clone()), Box::new(r.expr.clone())), ty })
    };
    let arith = |op: BinOp, sym: &str| {
        want_num(&l, sym)?;
        want_num(&r, sym)?;
        let ty = match (l.ty, r.ty) {
            (SqlType::Bigint, SqlType::Bigint) => SqlType::Bigint,
            (SqlType::Any, _) | (_, SqlType::Any) => SqlType::Any,
            _ => SqlType::Double,
        };
        bin(op, ty)
    };
    let cmp = |op: BinOp, sym: &str| {
        comparable(&l, &r, sym)?;
        bin(op, SqlType::Boolean)
    };
    match op {
        O::Plus => arith(BinOp::Add, "+"),
        O::Minus => arith(BinOp::Sub, "-"),
        O::Multiply => arith(BinOp::Mul, "*"),
        O::Divide => arith(BinOp::Div, "/"),
        O::Modulo => arith(BinOp::Mod, "%"),
        O::StringConcat => bin(BinOp::Concat, SqlType::String),
        O::Eq => cmp(BinOp::Eq, "="),
        O::NotEq => cmp(BinOp::Ne, "<>"),
        O::Lt => cmp(BinOp::Lt, "<"),
        O::LtEq => cmp(BinOp::Le, "<="),
        O::Gt => cmp(BinOp::Gt, ">"),
        O::GtEq => cmp(BinOp::Ge, ">="),
        O::And | O::Or => {
            want_bool(&l, "AND/OR")?;
            want_bool(&r, "AND/OR")?;
            let (a, b) = (Box::new(l.expr), Box::new(r.expr));
            Ok(Typed {
                expr: if matches!(op, O::And) { Expr::And(a, b) } else { Expr::Or(a, b) },
                ty: SqlType::Boolean,
            })
        }
        other => Err(SqlError::unsupported(format!("operator {other} is not supported"))),
    }
}

impl Expr {
    /// Evaluates against `row`. An error is about this row's data (a value of another type
    /// than planned, an overflow): the caller parks the event.
    pub fn eval(&self, row: &[Value]) -> Result<Value, String> {
        Ok(match self {
            Expr::Slot(i) => row[*i].clone(),
            Expr::Literal(v) => v.clone(),
            Expr::Not(x) => match x.eval(row)? {
                Value::Bool(b) => Value::Bool(!b),
                Value::Null => Value::Null,
                other => return Err(format!("NOT of {}", other.to_json())),
            },
            Expr::Neg(x) => match x.eval(row)? {
                Value::Int(i) => Value::Int(i.checked_neg().ok_or("negation overflows BIGINT")?),
                Value::Double(d) => Value::Double(-d),
                Value::Null => Value::Null,
                other => return Err(format!("- of {}", other.to_json())),
            },
            Expr::Binary(op, a, b) => binary_value(*op, &a.eval(row)?, &b.eval(row)?)?,
            Expr::And(a, b) => {
                let x = truth(&a.eval(row)?)?;
                if x == Some(false) {
                    return Ok(Value::Bool(false));
                }
                match (x, truth(&b.eval(row)?)?) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Or(a, b) => {
                let x = truth(&a.eval(row)?)?;
                if x == Some(true) {
                    return Ok(Value::Bool(true));
                }
                match (x, truth(&b.eval(row)?)?) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::IsNull(x, negated) => Value::Bool(x.eval(row)?.is_null() != *negated),
            Expr::InList(x, items, negated) => {
                let v = x.eval(row)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in items {
                    let i = item.eval(row)?;
                    match v.sql_cmp(&i) {
                        Some(Ordering::Equal) => return Ok(Value::Bool(!negated)),
                        None if i.is_null() => saw_null = true,
                        _ => {}
                    }
                }
                if saw_null {
                    Value::Null
                } else {
                    Value::Bool(*negated)
                }
            }
            Expr::Between(x, lo, hi, negated) => {
                let v = x.eval(row)?;
                let (l, h) = (lo.eval(row)?, hi.eval(row)?);
                match (v.sql_cmp(&l), v.sql_cmp(&h)) {
                    (Some(a), Some(b)) => Value::Bool((a != Ordering::Less && b != Ordering::Greater) != *negated),
                    _ => Value::Null,
                }
            }
            Expr::Like(x, p, negated, insensitive) => match (x.eval(row)?, p.eval(row)?) {
                (Value::String(s), Value::String(p)) => {
                    let m = if *insensitive { like(&s.to_lowercase(), &p.to_lowercase()) } else { like(&s, &p) };
                    Value::Bool(m != *negated)
                }
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (a, _) => return Err(format!("LIKE of {}", a.to_json())),
            },
            Expr::Case(operand, whens, else_) => {
                let op = operand.as_ref().map(|o| o.eval(row)).transpose()?;
                for (cond, result) in whens {
                    let c = cond.eval(row)?;
                    let hit = match &op {
                        Some(o) => o.sql_cmp(&c) == Some(Ordering::Equal),
                        None => c.is_true(),
                    };
                    if hit {
                        return result.eval(row);
                    }
                }
                match else_ {
                    Some(e) => e.eval(row)?,
                    None => Value::Null,
                }
            }
            Expr::Cast(x, ty) => cast(x.eval(row)?, *ty)?,
            Expr::Call(f, args) => {
                let vals = args.iter().map(|a| a.eval(row)).collect::<Result<Vec<_>, _>>()?;
                f.call(&vals)?
            }
            Expr::Field(x, name) => match x.eval(row)? {
                Value::Struct(fields) => get_field(&fields, name),
                Value::Null => Value::Null,
                other => return Err(format!("field {name:?} of {}", other.to_json())),
            },
            Expr::Index(x, i) => match (x.eval(row)?, i.eval(row)?) {
                (Value::Array(items), Value::Int(n)) => {
                    let len = items.len() as i64;
                    let at = if n < 0 { len + n } else { n - 1 };
                    if (0..len).contains(&at) {
                        items[at as usize].clone()
                    } else {
                        Value::Null
                    }
                }
                (Value::Struct(fields), Value::String(k)) => get_field(&fields, &k),
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                (a, b) => return Err(format!("cannot index {} with {}", a.to_json(), b.to_json())),
            },
        })
    }
}

/// A STRUCT's field, by exact name or else ignoring ASCII case.
fn get_field(fields: &std::collections::BTreeMap<String, Value>, name: &str) -> Value {
    fields
        .get(name)
        .or_else(|| fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .cloned()
        .unwrap_or(Value::Null)
}

fn truth(v: &Value) -> Result<Option<bool>, String> {
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        Value::Null => Ok(None),
        other => Err(format!("expected a BOOLEAN, got {}", other.to_json())),
    }
}

fn binary_value(op: BinOp, a: &Value, b: &Value) -> Result<Value, String> {
    if op == BinOp::Concat {
        if a.is_null() || b.is_null() {
            return Ok(Value::Null);
        }
        return Ok(Value::string(&format!("{}{}", a.to_text(), b.to_text())));
    }
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let cmp = |f: fn(Ordering) -> bool| -> Result<Value, String> {
        match a.sql_cmp(b) {
            Some(o) => Ok(Value::Bool(f(o))),
            None => Err(format!("cannot compare {} with {}", a.to_json(), b.to_json())),
        }
    };
    match op {
        BinOp::Eq => cmp(|o| o == Ordering::Equal),
        BinOp::Ne => cmp(|o| o != Ordering::Equal),
        BinOp::Lt => cmp(|o| o == Ordering::Less),
        BinOp::Le => cmp(|o| o != Ordering::Greater),
        BinOp::Gt => cmp(|o| o == Ordering::Greater),
        BinOp::Ge => cmp(|o| o != Ordering::Less),
        _ => match (a, b) {
            (Value::Int(x), Value::Int(y)) => {
                let (x, y) = (*x, *y);
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div | BinOp::Mod if y == 0 => return Ok(Value::Null),
                    BinOp::Div => x.checked_div(y),
                    _ => x.checked_rem(y),
                };
                r.map(Value::Int).ok_or_else(|| format!("{x} {op:?} {y} overflows BIGINT"))
            }
            _ => {
                let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
                    return Err(format!("arithmetic on {} and {}", a.to_json(), b.to_json()));
                };
                Ok(match op {
                    BinOp::Add => Value::Double(x + y),
                    BinOp::Sub => Value::Double(x - y),
                    BinOp::Mul => Value::Double(x * y),
                    BinOp::Div | BinOp::Mod if y == 0.0 => Value::Null,
                    BinOp::Div => Value::Double(x / y),
                    _ => Value::Double(x % y),
                })
            }
        },
    }
}

/// CAST: numbers between BIGINT and DOUBLE (DOUBLE to BIGINT truncates), anything to STRING,
/// STRING to numbers and BOOLEAN by parsing (text that does not parse is an error for the row).
pub fn cast(v: Value, ty: SqlType) -> Result<Value, String> {
    Ok(match (v, ty) {
        (Value::Null, _) => Value::Null,
        (v, SqlType::Any) => v,
        (Value::Int(i), SqlType::Double) => Value::Double(i as f64),
        (Value::Double(d), SqlType::Bigint) => {
            if d.is_finite() && d.abs() < 9.2e18 {
                Value::Int(d.trunc() as i64)
            } else {
                return Err(format!("{d} does not fit a BIGINT"));
            }
        }
        (Value::String(s), SqlType::Bigint) => {
            Value::Int(s.trim().parse().map_err(|_| format!("{s:?} is not a BIGINT"))?)
        }
        (Value::String(s), SqlType::Double) => {
            Value::Double(s.trim().parse().map_err(|_| format!("{s:?} is not a DOUBLE"))?)
        }
        (Value::String(s), SqlType::Boolean) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(format!("{s:?} is not a BOOLEAN")),
        },
        (Value::Bool(b), SqlType::Bigint) => Value::Int(i64::from(b)),
        (v, SqlType::String) => Value::string(&v.to_text()),
        (v, ty) if SqlType::of(&v) == Some(ty) => v,
        (v, ty) => return Err(format!("cannot CAST {} AS {ty}", v.to_json())),
    })
}

/// SQL LIKE: `%` matches any run of characters, `_` exactly one.
fn like(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    // Iterative matcher with backtracking to the last `%` (linear in practice).
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if j < p.len() && (p[j] == '_' || p[j] == s[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '%')
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::GenericDialect;
    use sqlparser::parser::Parser;

    /// A scope of columns named a, b, c, s in slots 0..4, typed BIGINT, DOUBLE, STRING, ANY.
    struct Cols;
    impl Scope for Cols {
        fn column(&mut self, parts: &[String]) -> Result<Typed> {
            let (slot, ty) = match parts[0].as_str() {
                "a" => (0, SqlType::Bigint),
                "b" => (1, SqlType::Double),
                "c" => (2, SqlType::String),
                "s" => (3, SqlType::Any),
                other => return Err(SqlError::invalid(format!("unknown column {other}"))),
            };
            let mut t = Typed { expr: Expr::Slot(slot), ty };
            for p in &parts[1..] {
                t = field(t, p)?;
            }
            Ok(t)
        }
    }

    fn eval(sql: &str) -> Result<Value> {
        let e = Parser::new(&GenericDialect {}).try_with_sql(sql).unwrap().parse_expr().unwrap();
        let t = compile(&e, &mut Cols)?;
        let row = vec![
            Value::Int(7),
            Value::Double(2.5),
            Value::string("héllo"),
            Value::from_json(br#"{"x":{"y":[10,20]}}"#).unwrap(),
        ];
        t.expr.eval(&row).map_err(SqlError::Invalid)
    }

    #[test]
    fn arithmetic_comparison_and_logic() {
        assert_eq!(eval("a + 1").unwrap(), Value::Int(8));
        assert_eq!(eval("a / 2").unwrap(), Value::Int(3));
        assert_eq!(eval("a * b").unwrap(), Value::Double(17.5));
        assert!(eval("a / 0").unwrap().is_null());
        assert_eq!(eval("a > 3 AND c = 'héllo'").unwrap(), Value::Bool(true));
        assert!(eval("NULL AND TRUE").unwrap().is_null());
        assert_eq!(eval("NULL AND FALSE").unwrap(), Value::Bool(false));
        assert_eq!(eval("a IN (1, 7)").unwrap(), Value::Bool(true));
        assert_eq!(eval("a BETWEEN 7 AND 9").unwrap(), Value::Bool(true));
        assert_eq!(eval("c LIKE 'h%o'").unwrap(), Value::Bool(true));
        assert_eq!(eval("c LIKE 'h_llo'").unwrap(), Value::Bool(true));
        assert_eq!(eval("CASE WHEN a > 5 THEN 'big' ELSE 'small' END").unwrap(), Value::string("big"));
        assert_eq!(eval("CAST(b AS BIGINT)").unwrap(), Value::Int(2));
        assert_eq!(eval("s->x->y[2]").unwrap(), Value::Int(20));
        assert_eq!(eval("s.x.y[-1]").unwrap(), Value::Int(20));
        assert_eq!(eval("UPPER(c) || '!'").unwrap(), Value::string("HÉLLO!"));
        assert!(eval("9223372036854775807 + a").is_err());
    }

    #[test]
    fn type_errors_are_found_when_compiled() {
        for bad in
            ["c + 1", "NOT a", "a = 'x'", "UPPER(a)", "c > 1 AND a", "a LIKE 'x'", "nope + 1", "SUM(a)", "FOO(a)"]
        {
            assert!(eval(bad).is_err(), "{bad} compiled");
        }
        // ANY columns are checked per row.
        assert!(eval("s + 1").is_err());
    }
}
