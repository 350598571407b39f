//! From a SELECT to a plan: what to read of each input row, the filter, the grouping keys and
//! aggregates, the output columns, and (for pull queries) the order and limit. One planner
//! serves views (input rows come from events: JSON fields and pseudo-columns) and pull
//! queries (input rows are a view's rows), so both accept the same expressions.
//!
//! Name resolution: a bare name is a column of the input; `a.b` is field `b` of the STRUCT
//! column `a` (unless `a` is the source's name or alias); SQL names are case-insensitive.
//! In a grouped query, the SELECT list and HAVING may use the GROUP BY expressions (matched
//! as written, case aside) and aggregates of the input, nothing else.

use sqlparser::ast;

use crate::aggregate::AggKind;
use crate::error::{Result, SqlError};
use crate::expr::{compile, function_args, Expr, Scope, Typed};
use crate::parse::object_name;
use crate::value::SqlType;
use crate::window::WindowSpec;

/// An output column.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type name (BIGINT, STRING, ...).
    #[serde(rename = "type")]
    pub ty: String,
}

/// What the planner needs to know of the input.
pub trait Input {
    /// The slot and type of a column named `name` (of the source `qualifier` names, when the
    /// query qualified it), allocating a slot when the input reads only what queries name.
    /// `Ok(None)` when there is no such column.
    fn column(&mut self, qualifier: Option<&str>, name: &str) -> Result<Option<(usize, SqlType)>>;
    /// Names the columns for `SELECT *`: (name, slot, type), in order.
    fn star(&mut self) -> Result<Vec<(String, usize, SqlType)>>;
    /// The names a qualified column may start with (the source's name and alias).
    fn qualifiers(&self) -> Vec<String>;
    /// Whether `e` is the key of a join's table side (what ON must compare with).
    fn is_table_key(&self, _e: &Expr) -> bool {
        false
    }
    /// Whether `e` reads only the stream side of a join.
    fn is_stream_only(&self, _e: &Expr) -> bool {
        true
    }
}

/// A planned join: the stream expression looked up in the table side's keys.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    /// Over the stream's columns: the key to look up.
    pub stream_key: Expr,
    /// LEFT JOIN.
    pub left: bool,
}

/// An aggregate call: its function and argument (over the input row).
#[derive(Debug, Clone)]
pub struct AggCall {
    /// Function.
    pub kind: AggKind,
    /// Argument (None: COUNT(*)).
    pub arg: Option<Expr>,
}

/// GROUP BY: keys and aggregates over the input; the output is computed over the grouped
/// row `[keys..., aggregate results..., WINDOWSTART, WINDOWEND]`.
#[derive(Debug, Clone)]
pub struct Grouping {
    /// Key expressions.
    pub keys: Vec<Expr>,
    /// Aggregates.
    pub aggs: Vec<AggCall>,
    /// HAVING over the grouped row.
    pub having: Option<Expr>,
    /// The window, if any.
    pub window: Option<WindowSpec>,
    /// The keys' types (a single STRING key is written to the changelog as plain text).
    pub key_types: Vec<SqlType>,
}

impl Grouping {
    /// Slot of WINDOWSTART in the grouped row.
    pub fn window_slot(&self) -> usize {
        self.keys.len() + self.aggs.len()
    }
}

/// ORDER BY item: an output column index (hidden columns come after the visible ones).
#[derive(Debug, Clone, Copy)]
pub struct OrderKey {
    /// Column.
    pub column: usize,
    /// Descending.
    pub desc: bool,
    /// NULLs first.
    pub nulls_first: bool,
}

/// A planned SELECT.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The source named in FROM.
    pub source: String,
    /// A stream-table join.
    pub join: Option<JoinPlan>,
    /// WHERE over the input row.
    pub filter: Option<Expr>,
    /// GROUP BY.
    pub grouping: Option<Grouping>,
    /// Output expressions (over the grouped row, or the input row); the first
    /// `columns.len()` are visible, the rest only sort.
    pub outputs: Vec<Expr>,
    /// Visible output columns.
    pub columns: Vec<Column>,
    /// Output columns that are EXPLODE(array): the row is repeated per element.
    pub explode: Vec<usize>,
    /// ORDER BY.
    pub order: Vec<OrderKey>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: u64,
}

/// `JOIN table [alias] ON condition` after the FROM source.
#[derive(Debug, Clone)]
pub struct JoinClause {
    /// The table side: a table view or a topic read as a table (latest value per key).
    pub table: String,
    /// Its alias.
    pub alias: Option<String>,
    /// LEFT JOIN (unmatched rows kept, table columns NULL) or inner.
    pub left: bool,
    /// The ON condition.
    pub on: ast::Expr,
}

/// A FROM clause: the source, its alias, and a join.
#[derive(Debug, Clone)]
pub struct FromClause {
    /// The source named first.
    pub source: String,
    /// Its alias.
    pub alias: Option<String>,
    /// A stream-table join.
    pub join: Option<JoinClause>,
}

fn relation(factor: &ast::TableFactor) -> Result<(String, Option<String>)> {
    match factor {
        ast::TableFactor::Table { name, alias, args: None, .. } => {
            Ok((object_name(name)?, alias.as_ref().map(|a| a.name.value.clone())))
        }
        other => Err(SqlError::unsupported(format!("FROM {other}: a topic or view name is expected"))),
    }
}

/// The FROM clause of a SELECT.
pub fn from_clause(query: &ast::Query) -> Result<FromClause> {
    let select = select_of(query)?;
    let [from] = select.from.as_slice() else {
        return Err(if select.from.is_empty() {
            SqlError::invalid("a query needs FROM (a topic or a view)")
        } else {
            SqlError::unsupported("one FROM source (with at most one JOIN) per query")
        });
    };
    let (source, alias) = relation(&from.relation)?;
    let join = match from.joins.as_slice() {
        [] => None,
        [j] => {
            let (table, talias) = relation(&j.relation)?;
            let (left, constraint) = match &j.join_operator {
                ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (false, c),
                ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (true, c),
                other => return Err(SqlError::unsupported(format!("{other:?}: stream-table joins are INNER or LEFT"))),
            };
            let ast::JoinConstraint::On(on) = constraint else {
                return Err(SqlError::unsupported("a join needs ON stream_expression = table.key"));
            };
            Some(JoinClause { table, alias: talias, left, on: on.clone() })
        }
        _ => return Err(SqlError::unsupported("one JOIN per query")),
    };
    Ok(FromClause { source, alias, join })
}

/// The source a SELECT reads (FROM's one relation), and its alias; a join is refused.
pub fn source_of(query: &ast::Query) -> Result<(String, Option<String>)> {
    let from = from_clause(query)?;
    if from.join.is_some() {
        return Err(SqlError::unsupported(
            "joins belong in CREATE TABLE|STREAM ... AS SELECT: create a view, then query it",
        ));
    }
    Ok((from.source, from.alias))
}

fn select_of(query: &ast::Query) -> Result<&ast::Select> {
    if query.with.is_some() {
        return Err(SqlError::unsupported("WITH is not supported"));
    }
    match query.body.as_ref() {
        ast::SetExpr::Select(s) => Ok(s),
        other => Err(SqlError::unsupported(format!(
            "{other}: only SELECT ... FROM is supported (no UNION, VALUES or subqueries)"
        ))),
    }
}

/// Resolves plain column names against an [`Input`].
struct InputScope<'a> {
    input: &'a mut dyn Input,
}

impl Scope for InputScope<'_> {
    fn column(&mut self, parts: &[String]) -> Result<Typed> {
        let qualifiers = self.input.qualifiers();
        let (qualifier, parts) = match parts {
            [q, rest @ ..] if !rest.is_empty() && qualifiers.iter().any(|x| x.eq_ignore_ascii_case(q)) => {
                (Some(q.as_str()), rest)
            }
            _ => (None, parts),
        };
        let Some((slot, ty)) = self.input.column(qualifier, &parts[0])? else {
            return Err(SqlError::invalid(format!("unknown column {}", parts[0])));
        };
        let mut t = Typed { expr: Expr::Slot(slot), ty };
        for p in &parts[1..] {
            if !matches!(t.ty, SqlType::Struct | SqlType::Any) {
                return Err(SqlError::invalid(format!("cannot take field {p:?} of a {}", t.ty)));
            }
            t = Typed { expr: Expr::Field(Box::new(t.expr), std::sync::Arc::from(p.as_str())), ty: SqlType::Any };
        }
        Ok(t)
    }
}

/// Resolves the SELECT list and HAVING of a grouped query.
struct GroupScope<'a, 'b> {
    inner: InputScope<'a>,
    key_texts: &'b [String],
    key_types: &'b [SqlType],
    aggs: Vec<AggCall>,
    agg_types: Vec<SqlType>,
    agg_texts: Vec<String>,
    window: Option<WindowSpec>,
}

fn text_of(e: &ast::Expr) -> String {
    e.to_string().to_ascii_lowercase()
}

impl GroupScope<'_, '_> {
    fn agg_slot(&self, i: usize) -> usize {
        self.key_texts.len() + i
    }
}

impl Scope for GroupScope<'_, '_> {
    fn whole(&mut self, e: &ast::Expr) -> Result<Option<Typed>> {
        let text = text_of(e);
        if let Some(i) = self.key_texts.iter().position(|k| *k == text) {
            return Ok(Some(Typed { expr: Expr::Slot(i), ty: self.key_types[i] }));
        }
        let ast::Expr::Function(f) = e else { return Ok(None) };
        let name = f.name.to_string().to_ascii_uppercase();
        let Some(mut kind) = AggKind::lookup(&name) else { return Ok(None) };
        if let Some(i) = self.agg_texts.iter().position(|k| *k == text) {
            return Ok(Some(Typed { expr: Expr::Slot(self.agg_slot(i)), ty: self.agg_types[i] }));
        }
        let (args, distinct) = function_args(f)?;
        if distinct {
            if kind != AggKind::Count {
                return Err(SqlError::unsupported(format!(
                    "{name}(DISTINCT ...) is not supported; COUNT(DISTINCT x) is"
                )));
            }
            kind = AggKind::CountDistinct;
        }
        let arg = match (kind, args.as_slice()) {
            (AggKind::Count, []) => None,
            (_, [a]) => Some(compile(a, &mut self.inner)?),
            _ => return Err(SqlError::invalid(format!("{name} takes one argument"))),
        };
        let ty = kind.result_type(&name, arg.as_ref().map(|a| a.ty))?;
        self.aggs.push(AggCall { kind, arg: arg.map(|a| a.expr) });
        self.agg_types.push(ty);
        self.agg_texts.push(text);
        Ok(Some(Typed { expr: Expr::Slot(self.agg_slot(self.aggs.len() - 1)), ty }))
    }

    fn column(&mut self, parts: &[String]) -> Result<Typed> {
        if self.window.is_some() && parts.len() == 1 {
            let slot = self.key_texts.len() + self.aggs.len();
            // Window bounds sit after the aggregates; aggregates met later shift them, so they
            // are placed by `fix_window_slots` once the whole list is compiled.
            if parts[0].eq_ignore_ascii_case("WINDOWSTART") {
                return Ok(Typed { expr: Expr::Slot(WINDOW_START_MARK), ty: SqlType::Bigint });
            }
            if parts[0].eq_ignore_ascii_case("WINDOWEND") {
                return Ok(Typed { expr: Expr::Slot(WINDOW_START_MARK + 1), ty: SqlType::Bigint });
            }
            let _ = slot;
        }
        Err(SqlError::invalid(format!("column {} must appear in GROUP BY or inside an aggregate", parts.join("."))))
    }
}

/// Placeholder slots for WINDOWSTART/WINDOWEND until the number of aggregates is known.
const WINDOW_START_MARK: usize = usize::MAX - 1;

fn fix_window_slots(e: &mut Expr, start: usize) {
    match e {
        Expr::Slot(s) if *s >= WINDOW_START_MARK => *s = start + (*s - WINDOW_START_MARK),
        Expr::Slot(_) | Expr::Literal(_) => {}
        Expr::Not(x) | Expr::Neg(x) | Expr::IsNull(x, _) | Expr::Cast(x, _) | Expr::Field(x, _) => {
            fix_window_slots(x, start)
        }
        Expr::Binary(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) | Expr::Index(a, b) | Expr::Like(a, b, _, _) => {
            fix_window_slots(a, start);
            fix_window_slots(b, start);
        }
        Expr::InList(x, items, _) => {
            fix_window_slots(x, start);
            items.iter_mut().for_each(|i| fix_window_slots(i, start));
        }
        Expr::Between(a, b, c, _) => {
            for x in [a, b, c] {
                fix_window_slots(x, start);
            }
        }
        Expr::Case(op, whens, else_) => {
            if let Some(o) = op {
                fix_window_slots(o, start);
            }
            for (c, r) in whens {
                fix_window_slots(c, start);
                fix_window_slots(r, start);
            }
            if let Some(e) = else_ {
                fix_window_slots(e, start);
            }
        }
        Expr::Call(_, args) => args.iter_mut().for_each(|a| fix_window_slots(a, start)),
    }
}

/// How a SELECT may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The query of a CREATE TABLE: grouped.
    Table,
    /// The query of a CREATE STREAM or a push query: row by row, EXPLODE allowed.
    Stream,
    /// A pull query: anything, with ORDER BY and LIMIT.
    Pull,
}

/// Plans `query` over `input`.
pub fn plan(query: &ast::Query, window: Option<WindowSpec>, input: &mut dyn Input, usage: Use) -> Result<Plan> {
    let select = select_of(query)?;
    let from = from_clause(query)?;
    let source = from.source.clone();
    let join = match &from.join {
        None => None,
        Some(j) => Some(plan_join(j, input)?),
    };
    if select.distinct.is_some() {
        return Err(SqlError::unsupported("SELECT DISTINCT is not supported; use GROUP BY"));
    }
    if !select.named_window.is_empty()
        || select.qualify.is_some()
        || !select.lateral_views.is_empty()
        || select.top.is_some()
    {
        return Err(SqlError::unsupported("named windows, QUALIFY, LATERAL VIEW and TOP are not supported"));
    }
    let filter = match &select.selection {
        Some(w) => {
            let t = compile(w, &mut InputScope { input })?;
            if !matches!(t.ty, SqlType::Boolean | SqlType::Any) {
                return Err(SqlError::invalid(format!("WHERE needs a BOOLEAN, not a {}", t.ty)));
            }
            Some(t.expr)
        }
        None => None,
    };
    let group_exprs = match &select.group_by {
        ast::GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs.clone(),
        _ => return Err(SqlError::unsupported("GROUP BY ALL and grouping modifiers are not supported")),
    };
    let has_agg = select.projection.iter().any(|item| match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => contains_aggregate(e),
        _ => false,
    });
    let grouped = !group_exprs.is_empty() || has_agg || select.having.is_some();
    match usage {
        Use::Table if group_exprs.is_empty() => {
            return Err(SqlError::invalid(
                "CREATE TABLE ... AS SELECT needs GROUP BY (the table's key); for row-by-row results use CREATE STREAM",
            ))
        }
        Use::Stream if grouped => {
            return Err(SqlError::invalid(
                "a stream is row by row: GROUP BY and aggregates make a table (CREATE TABLE)",
            ))
        }
        _ => {}
    }
    if window.is_some() && !grouped {
        return Err(SqlError::invalid("WINDOW needs GROUP BY"));
    }
    let mut outputs = Vec::new();
    let mut columns = Vec::new();
    let mut explode = Vec::new();
    let mut grouping = None;
    if grouped {
        let mut keys = Vec::new();
        let mut key_types = Vec::new();
        let mut key_texts = Vec::new();
        for g in &group_exprs {
            let t = compile(g, &mut InputScope { input })?;
            if matches!(t.ty, SqlType::Array | SqlType::Struct) {
                return Err(SqlError::invalid(format!("GROUP BY {g}: a key cannot be an {}", t.ty)));
            }
            keys.push(t.expr);
            key_types.push(t.ty);
            key_texts.push(text_of(g));
        }
        let mut scope = GroupScope {
            inner: InputScope { input },
            key_texts: &key_texts,
            key_types: &key_types,
            aggs: Vec::new(),
            agg_types: Vec::new(),
            agg_texts: Vec::new(),
            window,
        };
        for item in &select.projection {
            let (e, alias) = match item {
                ast::SelectItem::UnnamedExpr(e) => (e, None),
                ast::SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.value.clone())),
                other => {
                    return Err(SqlError::invalid(format!(
                        "{other} is not allowed with GROUP BY: name the keys and aggregates"
                    )))
                }
            };
            let t = compile(e, &mut scope)?;
            columns.push(Column { name: alias.unwrap_or_else(|| column_name(e)), ty: t.ty.name().into() });
            outputs.push(t.expr);
        }
        let having = match &select.having {
            Some(h) => {
                let t = compile(h, &mut scope)?;
                if !matches!(t.ty, SqlType::Boolean | SqlType::Any) {
                    return Err(SqlError::invalid(format!("HAVING needs a BOOLEAN, not a {}", t.ty)));
                }
                Some(t.expr)
            }
            None => None,
        };
        let order = order_by(query, &columns, &mut outputs, &mut scope, usage)?;
        let aggs = std::mem::take(&mut scope.aggs);
        let start = keys.len() + aggs.len();
        let mut having = having;
        for o in outputs.iter_mut().chain(having.iter_mut()) {
            fix_window_slots(o, start);
        }
        grouping = Some(Grouping { keys, aggs, having, window, key_types: key_types.clone() });
        let (limit, offset) = limit_of(query, usage)?;
        check_names(&columns)?;
        return Ok(Plan { source, join, filter, grouping, outputs, columns, explode, order, limit, offset });
    }
    let mut scope = InputScope { input };
    for item in &select.projection {
        match item {
            ast::SelectItem::Wildcard(_) => {
                for (name, slot, ty) in scope.input.star()? {
                    columns.push(Column { name, ty: ty.name().into() });
                    outputs.push(Expr::Slot(slot));
                }
            }
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                let alias = match item {
                    ast::SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                    _ => None,
                };
                let (t, exploded) = match explode_arg(e)? {
                    Some(arg) if usage == Use::Stream => {
                        let t = compile(arg, &mut scope)?;
                        if !matches!(t.ty, SqlType::Array | SqlType::Any) {
                            return Err(SqlError::invalid(format!("EXPLODE needs an ARRAY, not a {}", t.ty)));
                        }
                        (Typed { expr: t.expr, ty: SqlType::Any }, true)
                    }
                    Some(_) => {
                        return Err(SqlError::invalid("EXPLODE belongs in CREATE STREAM ... AS SELECT or a push query"))
                    }
                    None => (compile(e, &mut scope)?, false),
                };
                if exploded {
                    explode.push(columns.len());
                }
                columns.push(Column { name: alias.unwrap_or_else(|| column_name(e)), ty: t.ty.name().into() });
                outputs.push(t.expr);
            }
            other => return Err(SqlError::unsupported(format!("{other} is not supported in SELECT"))),
        }
    }
    let order = order_by(query, &columns, &mut outputs, &mut scope, usage)?;
    let (limit, offset) = limit_of(query, usage)?;
    check_names(&columns)?;
    Ok(Plan { source, join, filter, grouping, outputs, columns, explode, order, limit, offset })
}

/// Reads `ON a = b`: one side the table's key, the other an expression of the stream.
fn plan_join(j: &JoinClause, input: &mut dyn Input) -> Result<JoinPlan> {
    let bad = || {
        SqlError::invalid(format!("ON {}: a join compares an expression of the stream with the table's key (t.ROWKEY, or a table view's key column)", j.on))
    };
    let ast::Expr::BinaryOp { left, op: ast::BinaryOperator::Eq, right } = &j.on else { return Err(bad()) };
    let l = compile(left, &mut InputScope { input })?;
    let r = compile(right, &mut InputScope { input })?;
    let stream_key = match (input.is_table_key(&l.expr), input.is_table_key(&r.expr)) {
        (true, false) => r.expr,
        (false, true) => l.expr,
        _ => return Err(bad()),
    };
    if !input.is_stream_only(&stream_key) {
        return Err(bad());
    }
    Ok(JoinPlan { stream_key, left: j.left })
}

fn check_names(columns: &[Column]) -> Result<()> {
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name.eq_ignore_ascii_case(&c.name)) {
            return Err(SqlError::invalid(format!(
                "two output columns are named {:?}: give one another name with AS",
                c.name
            )));
        }
    }
    Ok(())
}

fn explode_arg(e: &ast::Expr) -> Result<Option<&ast::Expr>> {
    let ast::Expr::Function(f) = e else { return Ok(None) };
    if !f.name.to_string().eq_ignore_ascii_case("EXPLODE") {
        return Ok(None);
    }
    match function_args(f)?.0.as_slice() {
        [a] => Ok(Some(a)),
        _ => Err(SqlError::invalid("EXPLODE takes one ARRAY")),
    }
}

fn contains_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = sqlparser_visit(e, &mut |x| {
        if let ast::Expr::Function(f) = x {
            if AggKind::lookup(&f.name.to_string()).is_some() {
                found = true;
            }
        }
    });
    found
}

/// Calls `f` on `e` and every expression inside it (as far as evident's subset goes).
fn sqlparser_visit(e: &ast::Expr, f: &mut dyn FnMut(&ast::Expr)) -> Option<()> {
    f(e);
    use ast::Expr as A;
    match e {
        A::Nested(x) | A::UnaryOp { expr: x, .. } | A::IsNull(x) | A::IsNotNull(x) | A::Cast { expr: x, .. } => {
            sqlparser_visit(x, f)
        }
        A::BinaryOp { left, right, .. } => {
            sqlparser_visit(left, f);
            sqlparser_visit(right, f)
        }
        A::Function(func) => {
            if let ast::FunctionArguments::List(list) = &func.args {
                for a in &list.args {
                    if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(x)) = a {
                        sqlparser_visit(x, f);
                    }
                }
            }
            Some(())
        }
        A::Case { operand, conditions, else_result, .. } => {
            if let Some(o) = operand {
                sqlparser_visit(o, f);
            }
            for c in conditions {
                sqlparser_visit(&c.condition, f);
                sqlparser_visit(&c.result, f);
            }
            if let Some(x) = else_result {
                sqlparser_visit(x, f);
            }
            Some(())
        }
        _ => Some(()),
    }
}

/// The name of an unaliased output column: a column's own name, else the expression's text.
fn column_name(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Identifier(id) => id.value.clone(),
        ast::Expr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.clone()).unwrap_or_default(),
        other => other.to_string(),
    }
}

fn order_by(
    query: &ast::Query,
    columns: &[Column],
    outputs: &mut Vec<Expr>,
    scope: &mut dyn Scope,
    usage: Use,
) -> Result<Vec<OrderKey>> {
    let Some(order) = &query.order_by else { return Ok(Vec::new()) };
    if usage != Use::Pull {
        return Err(SqlError::invalid("ORDER BY applies to pull queries: a view's rows are ordered when queried"));
    }
    let ast::OrderByKind::Expressions(items) = &order.kind else {
        return Err(SqlError::unsupported("ORDER BY ALL is not supported"));
    };
    let mut keys = Vec::new();
    for item in items {
        let desc = matches!(item.options.sort, Some(ast::OrderBySort::Desc));
        // NULLs sort as the smallest value: first ascending, last descending (PostgreSQL's
        // default is the opposite for ASC; ksqlDB has no ORDER BY).
        let nulls_first = item.options.nulls_first.unwrap_or(!desc);
        let by_name = match &item.expr {
            ast::Expr::Identifier(id) => columns.iter().position(|c| c.name.eq_ignore_ascii_case(&id.value)),
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => match n.parse::<usize>() {
                    Ok(i) if (1..=columns.len()).contains(&i) => Some(i - 1),
                    _ => {
                        return Err(SqlError::invalid(format!(
                            "ORDER BY {n}: there are {} output columns",
                            columns.len()
                        )))
                    }
                },
                _ => None,
            },
            _ => None,
        };
        let column = match by_name {
            Some(i) => i,
            None => {
                let t = compile(&item.expr, scope)?;
                outputs.push(t.expr);
                outputs.len() - 1
            }
        };
        keys.push(OrderKey { column, desc, nulls_first });
    }
    Ok(keys)
}

fn limit_of(query: &ast::Query, usage: Use) -> Result<(Option<u64>, u64)> {
    let Some(limit) = &query.limit_clause else { return Ok((None, 0)) };
    let number = |e: &ast::Expr| -> Result<u64> {
        match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => {
                    n.parse().map_err(|_| SqlError::invalid(format!("LIMIT/OFFSET {n} is not a whole number")))
                }
                other => Err(SqlError::invalid(format!("LIMIT/OFFSET {other} is not a whole number"))),
            },
            other => Err(SqlError::invalid(format!("LIMIT/OFFSET {other} is not a whole number"))),
        }
    };
    let (limit, offset) = match limit {
        ast::LimitClause::LimitOffset { limit, offset, limit_by } if limit_by.is_empty() => (
            limit.as_ref().map(number).transpose()?,
            offset.as_ref().map(|o| number(&o.value)).transpose()?.unwrap_or(0),
        ),
        ast::LimitClause::OffsetCommaLimit { offset, limit } => (Some(number(limit)?), number(offset)?),
        _ => return Err(SqlError::unsupported("LIMIT BY is not supported")),
    };
    if usage == Use::Table || (usage == Use::Stream && offset > 0) {
        return Err(SqlError::invalid("LIMIT applies to queries, not to a view's definition"));
    }
    Ok((limit, offset))
}
