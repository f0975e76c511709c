//! Unit tests of [`super`].

use super::*;

fn column(name: &str, kind: TypeKind, not_null: bool) -> Column {
    Column::for_test(name, kind, not_null)
}

fn table(schema: &str, name: &str, columns: Vec<Column>) -> Table {
    Table {
        relid: 0,
        schema: schema.into(),
        name: name.into(),
        qualified: format!("{schema}.{name}"),
        primary_key: vec!["id".into()],
        columns,
    }
}

#[test]
fn names_are_pascal_and_camel_and_qualified_only_when_shared() {
    let info = build(Catalog {
        tables: vec![
            table("public", "user_profiles", vec![]),
            table("app", "users", vec![]),
            table("auth", "users", vec![]),
        ],
    });
    let names: Vec<(&str, &str)> = info
        .tables
        .iter()
        .map(|t| (t.names.object.as_str(), t.names.field.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("UserProfiles", "userProfiles"),
            ("AppUsers", "appUsers"),
            ("AuthUsers", "authUsers")
        ]
    );
    assert_eq!(info.tables[0].names.filter, "UserProfilesWhere");
}

#[test]
fn reserved_names_are_avoided() {
    let info = build(Catalog {
        tables: vec![
            table("public", "change", vec![]),
            table("public", "changes", vec![]),
            table("public", "json", vec![]),
        ],
    });
    let objects: Vec<&str> = info
        .tables
        .iter()
        .map(|t| t.names.object.as_str())
        .collect();
    // `Change` is the generic type; `ChangesWhere` etc. are free.
    assert_eq!(objects, ["ChangeTable", "Changes", "Json"]);
    let fields: Vec<&str> = info.tables.iter().map(|t| t.names.field.as_str()).collect();
    assert_eq!(fields, ["changeTable", "changes2", "json"]);
}

#[test]
fn column_types_follow_postgres_types() {
    let info = build(Catalog {
        tables: vec![table(
            "public",
            "t",
            vec![
                column("id", TypeKind::BigInt, true),
                column("tags", TypeKind::Array(Box::new(TypeKind::Text)), false),
                column(
                    "mood",
                    TypeKind::Enum {
                        name: "public.mood".into(),
                        labels: vec!["happy".into(), "sad".into()],
                    },
                    false,
                ),
                column(
                    "odd",
                    TypeKind::Enum {
                        name: "public.odd".into(),
                        labels: vec!["in progress".into()],
                    },
                    false,
                ),
                column("bad name", TypeKind::Text, false),
                column("doc", TypeKind::Json, false),
            ],
        )],
    });
    let t = &info.tables[0];
    let shapes: Vec<(&str, String, bool, bool)> = t
        .columns
        .iter()
        .map(|c| (c.field(), c.base.name().to_owned(), c.list, c.orderable))
        .collect();
    assert_eq!(
        shapes,
        [
            ("id", "BigInt".into(), false, true),
            ("tags", "String".into(), true, false),
            ("mood", "Mood".into(), false, true),
            ("odd", "String".into(), false, true),
            ("doc", "JSON".into(), false, false),
        ]
    );
}
