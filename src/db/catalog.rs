//! The tracked tables as the catalog describes them: columns, Postgres types,
//! nullability and primary keys. The GraphQL schema, filters and name lookups
//! of `changes(table:)` are all built from one [`Catalog`] snapshot.

use deadpool_postgres::Pool;

use super::DbError;

/// How pgherald treats a column's Postgres type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeKind {
    /// `int2`, `int4`.
    Int,
    /// `int8`: exact, beyond a GraphQL `Int`.
    BigInt,
    /// `numeric`: exact decimal.
    Numeric,
    /// `float4`, `float8`.
    Float,
    /// `bool`.
    Bool,
    /// `text`, `varchar`, `bpchar`, `name`, `citext`.
    Text,
    /// `uuid`.
    Uuid,
    /// `timestamptz`.
    Timestamptz,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `date`.
    Date,
    /// `json`, `jsonb`.
    Json,
    /// A user-defined enum: its type name and labels in sort order.
    Enum {
        /// `schema.type` of the enum.
        name: String,
        /// Labels, in `enumsortorder`.
        labels: Vec<String>,
    },
    /// An array of the element kind.
    Array(Box<TypeKind>),
    /// Anything else, exposed as its text form; the Postgres type name.
    Other(String),
}

/// A column of a tracked table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// How its type is treated.
    pub kind: TypeKind,
    /// `format_type` of the column, e.g. `character varying(20)`.
    pub sql_type: String,
    /// Declared NOT NULL.
    pub not_null: bool,
}

#[cfg(test)]
impl Column {
    /// A column for tests of code built on the catalog.
    pub fn for_test(name: &str, kind: TypeKind, not_null: bool) -> Column {
        Column {
            name: name.into(),
            kind,
            sql_type: "test".into(),
            not_null,
        }
    }
}

/// A tracked table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The table's oid.
    pub relid: u32,
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `schema.table`, quoted where needed (as in `herald.events.table_name`).
    pub qualified: String,
    /// Primary key columns, in key order.
    pub primary_key: Vec<String>,
    /// Columns in attribute order.
    pub columns: Vec<Column>,
}

impl Table {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Every tracked table, in (schema, name) order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    /// The tables.
    pub tables: Vec<Table>,
}

/// Why a table name was refused; the message is shown to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    /// Not tracked (or does not exist).
    #[error("table {0:?} is not tracked (see herald.track)")]
    Unknown(String),
    /// A bare name tracked in several schemas.
    #[error("table name {0:?} is ambiguous; qualify it as schema.table")]
    Ambiguous(String),
}

impl Catalog {
    /// Resolves `name` (`schema.table` or a bare table name, either part
    /// optionally double-quoted) to a tracked table.
    pub fn resolve(&self, name: &str) -> Result<&Table, TableError> {
        let (schema, table) = match name.split_once('.') {
            Some((s, t)) => (Some(s.trim_matches('"')), t.trim_matches('"')),
            None => (None, name.trim_matches('"')),
        };
        let mut found = self
            .tables
            .iter()
            .filter(|t| t.name == table && schema.is_none_or(|s| t.schema == s));
        match (found.next(), found.next()) {
            (None, _) => Err(TableError::Unknown(name.to_owned())),
            (Some(t), None) => Ok(t),
            (Some(_), Some(_)) => Err(TableError::Ambiguous(name.to_owned())),
        }
    }

    /// The tracked table with oid `relid`.
    pub fn by_relid(&self, relid: u32) -> Option<&Table> {
        self.tables.iter().find(|t| t.relid == relid)
    }
}

/// Reads the tracked tables and their columns.
pub async fn load(pool: &Pool) -> Result<Catalog, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(include_str!("../../sql/catalog.sql"), &[])
        .await?;
    let mut tables: Vec<Table> = Vec::new();
    for row in rows {
        let relid: u32 = row.get("relid");
        if tables.last().is_none_or(|t| t.relid != relid) {
            tables.push(Table {
                relid,
                schema: row.get("schema_name"),
                name: row.get("table_name"),
                qualified: row.get("qualified"),
                primary_key: row.get("pk_columns"),
                columns: Vec::new(),
            });
        }
        let element: Option<String> = row.get("elem_type");
        let base = kind_of(
            element.as_deref().unwrap_or(row.get("base_type")),
            row.get("enum_name"),
            row.get("enum_labels"),
        );
        let kind = if element.is_some() {
            TypeKind::Array(Box::new(base))
        } else {
            base
        };
        let table = tables.last_mut().expect("pushed above");
        table.columns.push(Column {
            name: row.get("column_name"),
            kind,
            sql_type: row.get("sql_type"),
            not_null: row.get("not_null"),
        });
    }
    Ok(Catalog { tables })
}

/// The kind of a (non-array) type from its `pg_type.typname` (after
/// resolving domains to their base type).
fn kind_of(typname: &str, enum_name: Option<String>, labels: Option<Vec<String>>) -> TypeKind {
    if let (Some(name), Some(labels)) = (enum_name, labels) {
        return TypeKind::Enum { name, labels };
    }
    match typname {
        "int2" | "int4" => TypeKind::Int,
        "int8" => TypeKind::BigInt,
        "numeric" => TypeKind::Numeric,
        "float4" | "float8" => TypeKind::Float,
        "bool" => TypeKind::Bool,
        "text" | "varchar" | "bpchar" | "name" | "citext" => TypeKind::Text,
        "uuid" => TypeKind::Uuid,
        "timestamptz" => TypeKind::Timestamptz,
        "timestamp" => TypeKind::Timestamp,
        "date" => TypeKind::Date,
        "json" | "jsonb" => TypeKind::Json,
        other => TypeKind::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(schema: &str, name: &str, relid: u32) -> Table {
        Table {
            relid,
            schema: schema.into(),
            name: name.into(),
            qualified: format!("{schema}.{name}"),
            primary_key: vec!["id".into()],
            columns: vec![],
        }
    }

    #[test]
    fn bare_names_resolve_when_unambiguous_and_qualified_names_always() {
        let catalog = Catalog {
            tables: vec![
                table("app", "users", 1),
                table("auth", "users", 2),
                table("public", "documents", 3),
            ],
        };
        assert_eq!(catalog.resolve("documents").unwrap().relid, 3);
        assert_eq!(catalog.resolve("public.documents").unwrap().relid, 3);
        assert_eq!(catalog.resolve("\"auth\".\"users\"").unwrap().relid, 2);
        assert_eq!(
            catalog.resolve("users").unwrap_err(),
            TableError::Ambiguous("users".into())
        );
        assert_eq!(
            catalog.resolve("app.documents").unwrap_err(),
            TableError::Unknown("app.documents".into())
        );
    }

    #[test]
    fn types_map_to_kinds_and_enums_keep_their_order() {
        assert_eq!(kind_of("int8", None, None), TypeKind::BigInt);
        assert_eq!(kind_of("varchar", None, None), TypeKind::Text);
        assert_eq!(kind_of("inet", None, None), TypeKind::Other("inet".into()));
        assert_eq!(
            kind_of(
                "mood",
                Some("public.mood".into()),
                Some(vec!["sad".into(), "ok".into()])
            ),
            TypeKind::Enum {
                name: "public.mood".into(),
                labels: vec!["sad".into(), "ok".into()]
            }
        );
    }
}
