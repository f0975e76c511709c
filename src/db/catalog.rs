//! The tracked tables, looked up by the name a client gives in `changes(table:)`.

use deadpool_postgres::Pool;

use super::DbError;

/// A tracked table and its columns.
#[derive(Clone, Debug)]
pub struct TrackedTable {
    /// The table's oid.
    pub relid: u32,
    /// `schema.table`.
    pub qualified: String,
    /// Column names in order.
    pub columns: Vec<String>,
}

/// Why a table name was refused; the message is shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Not tracked (or does not exist).
    #[error("table {0:?} is not tracked (see herald.track)")]
    Unknown(String),
    /// A bare name tracked in several schemas.
    #[error("table name {0:?} is ambiguous; qualify it as schema.table")]
    Ambiguous(String),
    /// Lookup failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Resolves `name` (`schema.table` or a bare table name) to a tracked table.
pub async fn resolve(pool: &Pool, name: &str) -> Result<TrackedTable, TableError> {
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s.trim_matches('"')), t.trim_matches('"')),
        None => (None, name.trim_matches('"')),
    };
    let client = pool.get().await.map_err(DbError::from)?;
    let rows = client
        .query(
            "select t.relid, format('%I.%I', t.schema_name, t.table_name),
                    array(select a.attname::text from pg_attribute a
                           where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
                           order by a.attnum)
               from herald.tracked t
              where t.table_name = $1 and ($2::text is null or t.schema_name = $2)",
            &[&table, &schema],
        )
        .await
        .map_err(DbError::from)?;
    match rows.as_slice() {
        [] => Err(TableError::Unknown(name.to_owned())),
        [row] => Ok(TrackedTable {
            relid: row.get(0),
            qualified: row.get(1),
            columns: row.get(2),
        }),
        _ => Err(TableError::Ambiguous(name.to_owned())),
    }
}
