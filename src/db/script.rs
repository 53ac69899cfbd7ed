//! The writes of a batched transaction sent as one text script: each
//! statement is built with diesel as usual, its bound values are written
//! into the SQL as literals, and the statements go to the server together
//! in one round trip (`batch_execute`, multi-statement text protocol).
//!
//! Why: a multi-row statement has a different SQL text for every batch
//! size, so diesel cannot cache its prepared statement and every execution
//! costs a prepare, an execute and a close. At 600 orders/s that was 6.4
//! prepares per saga, ~15 % of the database's CPU in `MYSQLparse`, and
//! three wakeups of a server thread per statement on a 2-core machine
//! (docs/design/batching.md has the measurement).
//!
//! Safety: a string or byte value is written verbatim between quotes only
//! when it holds no quote, backslash or control character, otherwise as a
//! hexadecimal literal (with a charset introducer for text,
//! `_utf8mb4 X'6f6b'`), so no value can end a literal or change the
//! statement whatever it holds and whatever the server's `sql_mode`;
//! numbers and times are formatted from typed values.
//! A statement whose placeholder count does not match its values is
//! refused. Reads stay prepared statements: they need their rows back.
//!
//! `database.write_mode = "prepared"` runs the same statements as prepared
//! statements instead, one round trip each. docs/design/sql-text.md lists
//! the diesel internals this module relies on and how it is tested.

use diesel::{
    mysql::{data_types::MysqlTime, Mysql, MysqlQueryBuilder, MysqlType, MysqlValue},
    query_builder::{
        bind_collector::RawBytesBindCollector, AstPass, QueryBuilder, QueryFragment, QueryId,
    },
    result::Error,
    serialize::{Output, ToSql},
    sql_types, QueryResult,
};
use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

use crate::config::WriteMode;

/// Statements to run together, in order. Each is kept twice: as text with
/// its values inlined (the `text` write mode) and as its SQL with
/// placeholders plus the bytes diesel bound (the `prepared` write mode).
#[derive(Default)]
pub struct Script {
    sql: String,
    statements: Vec<Collected>,
}

/// One statement as diesel built it: the SQL with `?` placeholders and,
/// for each, the value's MySQL type and its bytes (`None` for NULL).
struct Collected {
    sql: String,
    binds: Vec<(MysqlType, Option<RawValue>)>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a diesel statement with its values inlined.
    pub fn push<Q: QueryFragment<Mysql>>(&mut self, query: &Q) -> QueryResult<&mut Self> {
        let collected = collect(query)?;
        if !self.statements.is_empty() {
            self.sql.push_str(";\n");
        }
        render(&collected, &mut self.sql)?;
        self.statements.push(collected);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The statements as one text, values inlined.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Runs every statement, in the write mode of the pool `conn` comes
    /// from (`database.write_mode`; text for a connection of no pool). In
    /// text mode all of them go in one round trip; in prepared mode each is
    /// a prepared statement with its values. Either way the server stops at
    /// the first failing statement and returns its error; run it inside a
    /// transaction so that nothing before the failure stays.
    pub async fn run(&self, conn: &mut AsyncMysqlConnection) -> QueryResult<()> {
        match super::pool::write_mode(conn) {
            WriteMode::Text => self.run_text(conn).await,
            WriteMode::Prepared => self.run_prepared(conn).await,
        }
    }

    pub(crate) async fn run_text(&self, conn: &mut AsyncMysqlConnection) -> QueryResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        conn.batch_execute(&self.sql).await
    }

    pub(crate) async fn run_prepared(&self, conn: &mut AsyncMysqlConnection) -> QueryResult<()> {
        for statement in &self.statements {
            Replay(statement).execute(conn).await?;
        }
        Ok(())
    }
}

/// The SQL of `query` with every bound value written in as a literal.
pub fn inline<Q: QueryFragment<Mysql>>(query: &Q) -> QueryResult<String> {
    let mut out = String::new();
    render(&collect(query)?, &mut out)?;
    Ok(out)
}

/// The SQL and the bound values of `query`, as diesel sends them.
fn collect<Q: QueryFragment<Mysql>>(query: &Q) -> QueryResult<Collected> {
    let mut qb = MysqlQueryBuilder::new();
    query.to_sql(&mut qb, &Mysql)?;
    let sql = qb.finish();
    let mut binds = RawBytesBindCollector::<Mysql>::new();
    query.collect_binds(&mut binds, &mut (), &Mysql)?;
    let binds: Vec<_> = binds
        .metadata
        .into_iter()
        .zip(binds.binds.into_iter().map(|b| b.map(RawValue)))
        .collect();
    if sql.matches('?').count() != binds.len() {
        return Err(unsupported("placeholders and values differ in number"));
    }
    Ok(Collected { sql, binds })
}

/// Appends the text of `c`, its values written in as literals.
fn render(c: &Collected, out: &mut String) -> QueryResult<()> {
    out.reserve(c.sql.len() * 2);
    let mut values = c.binds.iter();
    for (i, part) in c.sql.split('?').enumerate() {
        if i > 0 {
            let (ty, value) = values
                .next()
                .ok_or_else(|| unsupported("more placeholders than values"))?;
            literal(out, *ty, value.as_ref().map(|v| v.0.as_slice()))?;
        }
        out.push_str(part);
    }
    if values.next().is_some() {
        return Err(unsupported("more values than placeholders"));
    }
    Ok(())
}

/// A collected statement sent again as a prepared statement: the same SQL
/// and the same value bytes under the same MySQL types, so the server gets
/// what diesel would have sent for the original query.
struct Replay<'a>(&'a Collected);

impl QueryId for Replay<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl QueryFragment<Mysql> for Replay<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
        // Multi-row statements have a new text per batch size: caching
        // them would fill the statement cache with one-offs.
        out.unsafe_to_cache_prepared();
        let mut values = self.0.binds.iter();
        for (i, part) in self.0.sql.split('?').enumerate() {
            if i > 0 {
                let (ty, value) = values
                    .next()
                    .ok_or_else(|| unsupported("more placeholders than values"))?;
                bind_raw(&mut out, *ty, value)?;
            }
            out.push_sql(part);
        }
        Ok(())
    }
}

/// The bytes diesel's `ToSql` wrote for one value, written back verbatim.
#[derive(Debug)]
struct RawValue(Vec<u8>);

macro_rules! raw_to_sql {
    ($($st:ty),*) => {$(
        impl ToSql<$st, Mysql> for RawValue {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> diesel::serialize::Result {
                use std::io::Write;
                out.write_all(&self.0)?;
                Ok(diesel::serialize::IsNull::No)
            }
        }
    )*};
}

raw_to_sql!(
    sql_types::TinyInt,
    sql_types::SmallInt,
    sql_types::Integer,
    sql_types::BigInt,
    sql_types::Unsigned<sql_types::TinyInt>,
    sql_types::Unsigned<sql_types::SmallInt>,
    sql_types::Unsigned<sql_types::Integer>,
    sql_types::Unsigned<sql_types::BigInt>,
    sql_types::Numeric,
    sql_types::Date,
    sql_types::Datetime,
    sql_types::Timestamp,
    sql_types::Text,
    sql_types::Binary
);

/// Binds `value` under a diesel SQL type whose MySQL type is `ty`, so the
/// bind carries the same type tag as the original.
fn bind_raw<'b>(
    out: &mut AstPass<'_, 'b, Mysql>,
    ty: MysqlType,
    value: &'b Option<RawValue>,
) -> QueryResult<()> {
    use sql_types::{Nullable as N, Unsigned as U, *};
    match ty {
        MysqlType::Tiny => out.push_bind_param::<N<TinyInt>, _>(value),
        MysqlType::Short => out.push_bind_param::<N<SmallInt>, _>(value),
        MysqlType::Long => out.push_bind_param::<N<Integer>, _>(value),
        MysqlType::LongLong => out.push_bind_param::<N<BigInt>, _>(value),
        MysqlType::UnsignedTiny => out.push_bind_param::<N<U<TinyInt>>, _>(value),
        MysqlType::UnsignedShort => out.push_bind_param::<N<U<SmallInt>>, _>(value),
        MysqlType::UnsignedLong => out.push_bind_param::<N<U<Integer>>, _>(value),
        MysqlType::UnsignedLongLong => out.push_bind_param::<N<U<BigInt>>, _>(value),
        MysqlType::Numeric => out.push_bind_param::<N<Numeric>, _>(value),
        MysqlType::Date => out.push_bind_param::<N<Date>, _>(value),
        MysqlType::DateTime => out.push_bind_param::<N<Datetime>, _>(value),
        MysqlType::Timestamp => out.push_bind_param::<N<Timestamp>, _>(value),
        MysqlType::String => out.push_bind_param::<N<Text>, _>(value),
        MysqlType::Blob => out.push_bind_param::<N<Binary>, _>(value),
        _ => Err(unsupported(
            "a value of a type dop does not write in batches",
        )),
    }
}

fn unsupported(what: &str) -> Error {
    Error::SerializationError(format!("cannot inline the statement: {what}").into())
}

/// Writes one value as a SQL literal.
fn literal(out: &mut String, ty: MysqlType, value: Option<&[u8]>) -> QueryResult<()> {
    use std::fmt::Write;
    let Some(b) = value else {
        out.push_str("NULL");
        return Ok(());
    };
    let int = |n: usize| -> QueryResult<[u8; 8]> {
        let mut a = [0u8; 8];
        if b.len() != n {
            return Err(unsupported("integer of the wrong width"));
        }
        a[..n].copy_from_slice(b);
        Ok(a)
    };
    let r = match ty {
        // diesel writes a bool as a native i32 tagged Tiny; its first byte
        // is the value, as diesel-async reads it too.
        MysqlType::Tiny => match b.first() {
            Some(v) => write!(out, "{}", *v as i8),
            None => return Err(unsupported("an empty tiny integer")),
        },
        MysqlType::Short => {
            let a = int(2)?;
            write!(out, "{}", i16::from_ne_bytes([a[0], a[1]]))
        }
        MysqlType::Long => {
            let a = int(4)?;
            write!(out, "{}", i32::from_ne_bytes([a[0], a[1], a[2], a[3]]))
        }
        MysqlType::LongLong => write!(out, "{}", i64::from_ne_bytes(int(8)?)),
        MysqlType::UnsignedTiny => match b.first() {
            Some(v) => write!(out, "{v}"),
            None => return Err(unsupported("an empty tiny integer")),
        },
        MysqlType::UnsignedShort => {
            let a = int(2)?;
            write!(out, "{}", u16::from_ne_bytes([a[0], a[1]]))
        }
        MysqlType::UnsignedLong => {
            let a = int(4)?;
            write!(out, "{}", u32::from_ne_bytes([a[0], a[1], a[2], a[3]]))
        }
        MysqlType::UnsignedLongLong => write!(out, "{}", u64::from_ne_bytes(int(8)?)),
        MysqlType::Numeric => {
            // A decimal's text: digits, one point, a sign. Quoted, so the
            // server converts it exactly (a bare literal would too).
            let ok = !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+'));
            if !ok {
                return Err(unsupported("a decimal that is not plain digits"));
            }
            out.push('\'');
            out.push_str(std::str::from_utf8(b).map_err(|_| unsupported("decimal text"))?);
            out.push('\'');
            Ok(())
        }
        MysqlType::Date | MysqlType::DateTime | MysqlType::Timestamp => {
            let t: MysqlTime =
                diesel::deserialize::FromSql::<diesel::sql_types::Timestamp, Mysql>::from_sql(
                    MysqlValue::new(b, ty),
                )
                .map_err(|e| unsupported(&e.to_string()))?;
            write!(
                out,
                "'{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}'",
                t.year, t.month, t.day, t.hour, t.minute, t.second, t.second_part
            )
        }
        MysqlType::String if plain(b) => {
            // Nothing in it that a quoted literal treats specially in any
            // sql_mode: written as it is (half the bytes of hex to parse).
            out.push_str("_utf8mb4'");
            out.push_str(std::str::from_utf8(b).map_err(|_| unsupported("text"))?);
            out.push('\'');
            Ok(())
        }
        MysqlType::String | MysqlType::Blob => {
            // The introducer keeps a hex literal a character string in the
            // connection's charset (utf8mb4, set by diesel-async on
            // connect), so comparisons still use the column's index and
            // collation.
            out.push_str(if ty == MysqlType::Blob {
                "X'"
            } else {
                "_utf8mb4 X'"
            });
            for byte in b {
                write!(out, "{byte:02x}").map_err(|_| unsupported("hex"))?;
            }
            out.push('\'');
            Ok(())
        }
        _ => {
            return Err(unsupported(
                "a value of a type dop does not write in batches",
            ))
        }
    };
    r.map_err(|_| unsupported("formatting"))
}

/// Text that can go between single quotes verbatim: valid UTF-8 with no
/// quote, no backslash (an escape unless NO_BACKSLASH_ESCAPES) and no
/// control character. UTF-8 continuation bytes are never ASCII, so no
/// multibyte character can hide a quote.
fn plain(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok()
        && b.iter()
            .all(|&c| c >= 0x20 && c != b'\'' && c != b'\\' && c != 0x7f)
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;

    use super::*;

    diesel::table! {
        t (id) {
            id -> Varchar,
            n -> Integer,
            big -> BigInt,
            ok -> Bool,
            amount -> Numeric,
            at -> Datetime,
            note -> Nullable<Text>,
        }
    }

    #[test]
    fn values_become_literals_that_cannot_escape() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 26)
            .unwrap()
            .and_hms_micro_opt(9, 5, 7, 42)
            .unwrap();
        let amount: rust_decimal::Decimal = "199.98".parse().unwrap();
        let rows = vec![
            (
                t::id.eq("x'); DROP TABLE t; -- ?"),
                t::n.eq(-7),
                t::big.eq(i64::MAX),
                t::ok.eq(true),
                t::amount.eq(amount),
                t::at.eq(at),
                t::note.eq(None::<String>),
            ),
            (
                t::id.eq("é\\"),
                t::n.eq(0),
                t::big.eq(-1),
                t::ok.eq(false),
                t::amount.eq(-amount),
                t::at.eq(at),
                t::note.eq(Some(String::new())),
            ),
        ];
        let q = diesel::insert_into(t::table).values(&rows);
        let sql = inline(&q).unwrap();
        assert_eq!(
            sql,
            "INSERT INTO `t` (`id`, `n`, `big`, `ok`, `amount`, `at`, `note`) VALUES \
             (_utf8mb4 X'7827293b2044524f50205441424c4520743b202d2d203f', -7, 9223372036854775807, 1, \
             '199.98', '2026-11-26 09:05:07.000042', NULL), \
             (_utf8mb4 X'c3a95c', 0, -1, 0, '-199.98', '2026-11-26 09:05:07.000042', _utf8mb4'')"
        );
        // Plain text (JSON, non-ASCII) goes between quotes as it is.
        let q = diesel::delete(t::table.filter(t::id.eq(r#"{"a":"ünï ?"}"#)));
        assert_eq!(
            inline(&q).unwrap(),
            r#"DELETE FROM `t` WHERE (`t`.`id` = _utf8mb4'{"a":"ünï ?"}')"#
        );
    }

    #[test]
    fn a_script_joins_statements() {
        let mut s = Script::new();
        assert!(s.is_empty());
        s.push(&diesel::delete(t::table.filter(t::id.eq("a"))))
            .unwrap()
            .push(&diesel::update(t::table).set(t::n.eq(t::n + 1)))
            .unwrap();
        assert_eq!(
            s.sql(),
            "DELETE FROM `t` WHERE (`t`.`id` = _utf8mb4'a');\nUPDATE `t` SET `n` = (`t`.`n` + 1)"
        );
    }
}
