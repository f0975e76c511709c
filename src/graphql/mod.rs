//! The GraphQL API: the generic `changes` stream and `cursor` query, and,
//! generated from the tracked tables at start-up and on every catalog
//! change, typed objects, filters, queries and subscriptions per table.

pub mod access;
pub mod arguments;
pub mod context;
pub mod generated;
pub mod json;
pub mod limits;
pub mod model;
pub mod query;
mod rendering;
pub mod request;
pub mod scalar;
pub mod subscription;
pub mod types;

use crate::graphql::scalar::Scalar;
use std::sync::{Arc, RwLock};

use juniper::{EmptyMutation, RootNode};

pub use context::Context;
pub use query::Query;
pub use subscription::Subscription;

use crate::db::catalog::Catalog;

/// The pgherald schema.
pub type Schema = RootNode<Query, EmptyMutation<Context>, Subscription, Scalar>;

/// Builds the schema for the tracked tables of `catalog`.
pub fn build(catalog: Catalog) -> Schema {
    let info = Arc::new(model::build(catalog));
    Schema::new_with_info(
        Query,
        EmptyMutation::new(),
        Subscription,
        info.clone(),
        (),
        info,
    )
}

/// The current schema; replaced whole when the catalog changes. Operations
/// and connections keep the schema they started with.
pub struct SchemaHandle {
    current: RwLock<Arc<Schema>>,
    /// Bumped on every replacement, for those waiting on a reload.
    changes: tokio::sync::watch::Sender<u64>,
}

impl SchemaHandle {
    /// A handle holding `schema`.
    pub fn new(schema: Schema) -> SchemaHandle {
        SchemaHandle {
            current: RwLock::new(Arc::new(schema)),
            changes: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The schema new operations use.
    pub fn current(&self) -> Arc<Schema> {
        // A poisoned lock still holds a complete schema (replace only swaps an Arc).
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in `schema` for operations that start from now on.
    pub fn replace(&self, schema: Schema) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(schema);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Changes whenever the schema is replaced.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The catalog the current schema was built from.
    pub fn catalog(&self) -> Catalog {
        self.current().subscription_info.catalog.clone()
    }
}

#[cfg(test)]
mod tests {
    use juniper::{GraphQLError, IntrospectionFormat, Variables};

    use super::*;
    use crate::auth::Caller;
    use crate::db::catalog::{Column, Table, TypeKind};
    use crate::events::feed::Feed;
    use crate::events::hub::Hub;

    fn column(name: &str, kind: TypeKind, not_null: bool) -> Column {
        Column::for_test(name, kind, not_null)
    }

    fn catalog() -> Catalog {
        Catalog {
            tables: vec![Table {
                relid: 42,
                schema: "public".into(),
                name: "notifications".into(),
                qualified: "public.notifications".into(),
                primary_key: vec!["id".into()],
                columns: vec![
                    column("id", TypeKind::BigInt, true),
                    column("user_id", TypeKind::Uuid, true),
                    column("title", TypeKind::Text, true),
                    column("score", TypeKind::Numeric, false),
                    column("tags", TypeKind::Array(Box::new(TypeKind::Text)), false),
                    column(
                        "kind",
                        TypeKind::Enum {
                            name: "public.kind".into(),
                            labels: vec!["info".into(), "alert".into()],
                        },
                        true,
                    ),
                    column("created_at", TypeKind::Timestamptz, true),
                    column("data", TypeKind::Json, false),
                ],
            }],
        }
    }

    /// A context whose pool never connects (nothing here reaches the database).
    fn context() -> Context {
        let pool = crate::db::pool::build("postgres://nobody@127.0.0.1:1/none", 1).unwrap();
        let hub = Hub::new(
            Arc::new(crate::db::authorizer::PgAuthorizer::new(pool.clone())),
            1,
        );
        Context {
            caller: Arc::new(Caller::anonymous("anon")),
            pool: pool.clone(),
            feed: Arc::new(Feed::new(
                hub,
                pool,
                Arc::new(crate::events::cursor::CursorCodec::new(
                    "test".into(),
                    b"key",
                )),
                std::time::Duration::from_secs(1),
            )),
            query_timeout: std::time::Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn introspection_describes_the_generated_types() {
        let schema = build(catalog());
        let (value, errors) =
            juniper::introspect(&schema, &context(), IntrospectionFormat::default()).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let json = serde_json::to_value(&value).unwrap();
        let types = json["__schema"]["types"].as_array().unwrap();
        let find = |name: &str| {
            types
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("no type {name}"))
        };
        let row = find("Notifications");
        let field_type = |field: &str| {
            let f = row["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == field)
                .unwrap();
            f["type"].clone()
        };
        assert_eq!(field_type("id")["kind"], "NON_NULL");
        assert_eq!(field_type("id")["ofType"]["name"], "BigInt");
        assert_eq!(field_type("score")["name"], "BigFloat");
        assert_eq!(field_type("tags")["kind"], "LIST");
        assert_eq!(field_type("kind")["ofType"]["name"], "Kind");
        assert_eq!(find("Kind")["kind"], "ENUM");
        assert_eq!(find("NotificationsWhere")["kind"], "INPUT_OBJECT");
        assert_eq!(find("StringComparison")["kind"], "INPUT_OBJECT");
        assert_eq!(find("NotificationsChange")["kind"], "OBJECT");
        assert_eq!(find("NotificationsPage")["kind"], "OBJECT");
    }

    #[tokio::test]
    async fn inline_filters_validate_and_bad_ones_do_not() {
        let schema = build(catalog());
        let ok = r#"subscription {
            notifications(where: {_or: [{title: {like: "a%"}}, {id: {gt: 3000000000}}],
                                  kind: {in: [info, alert]}, _not: {score: {isNull: true}}},
                          ops: [INSERT], initial: true) {
                op initial cursor committedAt row { id title kind tags } old { id }
            }
        }"#;
        let bad = r#"subscription { notifications(where: {title: {nope: "x"}}) { op } }"#;
        let vars = Variables::<Scalar>::new();
        let ctx = context();
        let validate = |q: &'static str| {
            let schema = &schema;
            let vars = &vars;
            let ctx = &ctx;
            async move {
                match juniper::resolve_into_stream(q, None, schema, vars, ctx).await {
                    Err(GraphQLError::ValidationError(e)) => Err(format!("{e:?}")),
                    _ => Ok(()),
                }
            }
        };
        validate(ok).await.unwrap();
        let err = validate(bad).await.unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
