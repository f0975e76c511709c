//! What the generated part of the schema is made of: GraphQL names and types
//! for every tracked table and column, derived from the [`Catalog`] by fixed,
//! documented rules (see docs/api.md). Pure data, no
//! juniper: the types in [`super::generated`] register and resolve from it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::catalog::{Catalog, Column, Table, TypeKind};

/// A custom scalar of the generated API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScalarKind {
    /// `int8`, as a string of digits.
    BigInt,
    /// `numeric`, as a string of the exact decimal.
    BigFloat,
    /// `uuid`.
    Uuid,
    /// `timestamp` without time zone.
    Timestamp,
    /// `date`.
    Date,
}

impl ScalarKind {
    /// The scalar's GraphQL name.
    pub fn name(self) -> &'static str {
        match self {
            ScalarKind::BigInt => "BigInt",
            ScalarKind::BigFloat => "BigFloat",
            ScalarKind::Uuid => "UUID",
            ScalarKind::Timestamp => "Timestamp",
            ScalarKind::Date => "Date",
        }
    }

    /// The scalar's description in the schema.
    pub fn description(self) -> &'static str {
        match self {
            ScalarKind::BigInt => "A Postgres int8, as a string of digits (exact).",
            ScalarKind::BigFloat => "A Postgres numeric, as a string holding the exact decimal.",
            ScalarKind::Uuid => "A UUID in its canonical text form.",
            ScalarKind::Timestamp => {
                "A Postgres timestamp without time zone, ISO 8601 (YYYY-MM-DDTHH:MM:SS[.ffffff])."
            }
            ScalarKind::Date => "A Postgres date, YYYY-MM-DD.",
        }
    }
}

/// A Postgres enum exposed as a GraphQL enum.
#[derive(Debug, PartialEq, Eq)]
pub struct EnumInfo {
    /// GraphQL type name.
    pub name: String,
    /// `schema.type` in Postgres.
    pub sql_name: String,
    /// Labels in sort order (each a valid GraphQL name).
    pub labels: Vec<String>,
}

/// The named type at the bottom of a column's GraphQL type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base {
    /// `Int`.
    Int,
    /// `Float`.
    Float,
    /// `String`.
    String,
    /// `Boolean`.
    Boolean,
    /// `DateTime` (timestamptz).
    DateTime,
    /// `JSON`.
    Json,
    /// One of the custom scalars.
    Scalar(ScalarKind),
    /// A generated enum.
    Enum(Arc<EnumInfo>),
}

impl Base {
    /// The GraphQL name of this type.
    pub fn name(&self) -> &str {
        match self {
            Base::Int => "Int",
            Base::Float => "Float",
            Base::String => "String",
            Base::Boolean => "Boolean",
            Base::DateTime => "DateTime",
            Base::Json => "JSON",
            Base::Scalar(k) => k.name(),
            Base::Enum(e) => &e.name,
        }
    }

    /// The name of the input type comparing values of this type in `where`.
    pub fn comparison_name(&self, list: bool) -> String {
        let list = if list { "List" } else { "" };
        format!("{}{list}Comparison", self.name())
    }
}

/// A column as the generated API exposes it.
#[derive(Debug)]
pub struct ColumnInfo {
    /// The catalog's column.
    pub column: Column,
    /// Named type (element type for arrays).
    pub base: Base,
    /// A Postgres array (a GraphQL list of nullable elements).
    pub list: bool,
    /// Whether `orderBy` may use it (not JSON, not arrays).
    pub orderable: bool,
}

impl ColumnInfo {
    /// The GraphQL field name (the column name itself).
    pub fn field(&self) -> &str {
        &self.column.name
    }
}

/// Generated names of one table.
#[derive(Debug, PartialEq, Eq)]
pub struct TableNames {
    /// Row object type, e.g. `Notifications`.
    pub object: String,
    /// `<object>Change`.
    pub change: String,
    /// `<object>Page`.
    pub page: String,
    /// `<object>Where`.
    pub filter: String,
    /// `<object>OrderBy`.
    pub order_by: String,
    /// Query and subscription field, e.g. `notifications`.
    pub field: String,
}

/// A tracked table as the generated API exposes it.
#[derive(Debug)]
pub struct TableInfo {
    /// The catalog's table.
    pub table: Table,
    /// Its generated names.
    pub names: TableNames,
    /// Columns with GraphQL-compatible names, in attribute order.
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    /// The exposed column called `field`.
    pub fn column(&self, field: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.field() == field)
    }
}

/// The whole generated API.
#[derive(Debug, Default)]
pub struct SchemaInfo {
    /// Tables in catalog order.
    pub tables: Vec<Arc<TableInfo>>,
    /// The catalog it was built from.
    pub catalog: Catalog,
    /// Which build this is: unique in the process (0 for one not built by
    /// [`build`]). Subscriptions keep the schema they started with, so the
    /// same item may render differently under two generations.
    pub generation: u64,
}

impl SchemaInfo {
    /// The table whose query/subscription field is `field`.
    pub fn table_by_field(&self, field: &str) -> Option<&Arc<TableInfo>> {
        self.tables.iter().find(|t| t.names.field == field)
    }
}

/// Names the hand-written part of the schema uses; generated names avoid them.
const RESERVED_TYPES: &[&str] = &[
    "Query",
    "Mutation",
    "Subscription",
    "Change",
    "ChangeOp",
    "OrderDirection",
    "JSON",
    "DateTime",
    "BigInt",
    "BigFloat",
    "UUID",
    "Timestamp",
    "Date",
    "Int",
    "Float",
    "String",
    "Boolean",
    "ID",
];
const RESERVED_FIELDS: &[&str] = &["changes", "cursor"];

/// Builds the generated API's names and types from `catalog`.
pub fn build(catalog: Catalog) -> SchemaInfo {
    let mut taken: HashSet<String> = RESERVED_TYPES.iter().map(|s| s.to_string()).collect();
    // The comparison inputs of the built-in and custom scalars.
    let scalars: Vec<String> = taken.iter().cloned().collect();
    for name in scalars {
        taken.insert(format!("{name}Comparison"));
        taken.insert(format!("{name}ListComparison"));
    }
    let enums = enum_infos(&catalog, &mut taken);
    let mut fields: HashSet<String> = RESERVED_FIELDS.iter().map(|s| s.to_string()).collect();
    let shared_names: HashSet<&str> = {
        let mut seen = HashSet::new();
        catalog
            .tables
            .iter()
            .filter(|t| !seen.insert(t.name.as_str()))
            .map(|t| t.name.as_str())
            .collect()
    };
    let mut tables = Vec::new();
    for table in &catalog.tables {
        let mut object = if shared_names.contains(table.name.as_str()) {
            format!("{}{}", pascal(&table.schema), pascal(&table.name))
        } else {
            pascal(&table.name)
        };
        while [
            "",
            "Change",
            "Page",
            "Where",
            "OrderBy",
            "Comparison",
            "ListComparison",
        ]
        .iter()
        .any(|suffix| taken.contains(&format!("{object}{suffix}")))
        {
            object.push_str("Table");
        }
        let names = TableNames {
            change: format!("{object}Change"),
            page: format!("{object}Page"),
            filter: format!("{object}Where"),
            order_by: format!("{object}OrderBy"),
            field: unique(camel(&object), &mut fields),
            object,
        };
        for n in [
            &names.object,
            &names.change,
            &names.page,
            &names.filter,
            &names.order_by,
        ] {
            taken.insert(n.clone());
        }
        let columns = table
            .columns
            .iter()
            .filter(|c| is_graphql_name(&c.name) && !c.name.starts_with("__"))
            .filter(|c| !matches!(c.name.as_str(), "_and" | "_or" | "_not"))
            .map(|c| column_info(c, &enums))
            .collect();
        tables.push(Arc::new(TableInfo {
            table: table.clone(),
            names,
            columns,
        }));
    }
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    SchemaInfo {
        tables,
        catalog,
        generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
    }
}

fn column_info(column: &Column, enums: &BTreeMap<String, Arc<EnumInfo>>) -> ColumnInfo {
    let (kind, list) = match &column.kind {
        TypeKind::Array(element) => (element.as_ref(), true),
        other => (other, false),
    };
    let base = match kind {
        TypeKind::Int => Base::Int,
        TypeKind::BigInt => Base::Scalar(ScalarKind::BigInt),
        TypeKind::Numeric => Base::Scalar(ScalarKind::BigFloat),
        TypeKind::Float => Base::Float,
        TypeKind::Bool => Base::Boolean,
        TypeKind::Text | TypeKind::Other(_) | TypeKind::Array(_) => Base::String,
        TypeKind::Uuid => Base::Scalar(ScalarKind::Uuid),
        TypeKind::Timestamptz => Base::DateTime,
        TypeKind::Timestamp => Base::Scalar(ScalarKind::Timestamp),
        TypeKind::Date => Base::Scalar(ScalarKind::Date),
        TypeKind::Json => Base::Json,
        TypeKind::Enum { name, .. } => match enums.get(name) {
            Some(e) => Base::Enum(e.clone()),
            None => Base::String,
        },
    };
    let orderable = !list && base != Base::Json;
    ColumnInfo {
        column: column.clone(),
        base,
        list,
        orderable,
    }
}

/// GraphQL enums for the Postgres enums used by tracked columns whose labels
/// are all GraphQL names; others are exposed as `String`.
fn enum_infos(catalog: &Catalog, taken: &mut HashSet<String>) -> BTreeMap<String, Arc<EnumInfo>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for column in catalog.tables.iter().flat_map(|t| &t.columns) {
        let kind = match &column.kind {
            TypeKind::Array(element) => element.as_ref(),
            other => other,
        };
        if let TypeKind::Enum { name, labels } = kind {
            let usable = !labels.is_empty()
                && labels.iter().all(|l| {
                    is_graphql_name(l) && !matches!(l.as_str(), "true" | "false" | "null")
                });
            if usable {
                found.insert(name.clone(), labels.clone());
            }
        }
    }
    let bare_count = |bare: &str| {
        found
            .keys()
            .filter(|k| k.rsplit('.').next() == Some(bare))
            .count()
    };
    let mut out = BTreeMap::new();
    for (sql_name, labels) in &found {
        let (schema, bare) = sql_name.rsplit_once('.').unwrap_or(("", sql_name));
        let bare_unquoted = bare.trim_matches('"');
        let mut name = if bare_count(bare) > 1 {
            format!(
                "{}{}",
                pascal(schema.trim_matches('"')),
                pascal(bare_unquoted)
            )
        } else {
            pascal(bare_unquoted)
        };
        while taken.contains(&name)
            || taken.contains(&format!("{name}Comparison"))
            || taken.contains(&format!("{name}ListComparison"))
        {
            name.push_str("Enum");
        }
        taken.insert(name.clone());
        taken.insert(format!("{name}Comparison"));
        taken.insert(format!("{name}ListComparison"));
        out.insert(
            sql_name.clone(),
            Arc::new(EnumInfo {
                name,
                sql_name: sql_name.clone(),
                labels: labels.clone(),
            }),
        );
    }
    out
}

/// `name`, or `name2`, `name3`... if taken; records the result.
fn unique(name: String, taken: &mut HashSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        candidate = format!("{name}{n}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// Whether `s` matches GraphQL's `/[_A-Za-z][_0-9A-Za-z]*/`.
pub fn is_graphql_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// `user_profiles` → `UserProfiles`; characters outside `[A-Za-z0-9]`
/// separate words and are dropped; a leading digit gets a `T` before it.
pub fn pascal(s: &str) -> String {
    let mut out = String::new();
    for word in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

/// `UserProfiles` → `userProfiles`.
pub fn camel(pascal: &str) -> String {
    let mut chars = pascal.chars();
    match chars.next() {
        Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
