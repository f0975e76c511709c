//! The canonical text of a selection, taken from juniper's look-ahead of a
//! small schema executed in memory.

use juniper::{EmptyMutation, EmptySubscription, InputValue, RootNode, Variables, graphql_object};

use super::*;

struct Query;

/// A node whose root field reports the canonical text of its own selection.
struct Node(String);

#[graphql_object(scalar = Scalar)]
impl Node {
    fn key(&self) -> &str {
        &self.0
    }

    fn id() -> i32 {
        1
    }

    fn title() -> &'static str {
        "t"
    }

    fn child() -> Node {
        Node(String::new())
    }

    fn sized(n: i32, mode: Option<String>) -> i32 {
        n + mode.map_or(0, |m| m.len() as i32)
    }
}

#[graphql_object(scalar = Scalar)]
impl Query {
    fn node(executor: &Executor<'_, '_, (), Scalar>, filter: Option<String>) -> Node {
        let _ = filter;
        let mut text = String::new();
        canonical(&executor.look_ahead().children(), &mut text);
        Node(text)
    }
}

type Schema = RootNode<Query, EmptyMutation<()>, EmptySubscription<()>, Scalar>;

/// The canonical text of `node`'s selection in `query` with `variables`.
fn key(query: &str, variables: &[(&str, InputValue<Scalar>)]) -> String {
    let schema =
        Schema::new_with_scalar_value(Query, EmptyMutation::new(), EmptySubscription::new());
    let vars: Variables<Scalar> = variables
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let (value, errors) = juniper::execute_sync(query, None, &schema, &vars, &()).unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let json = serde_json::to_value(&value).unwrap();
    json["node"]["key"].as_str().unwrap().to_owned()
}

fn boolean(b: bool) -> InputValue<Scalar> {
    InputValue::scalar(b)
}

#[test]
fn the_text_names_each_field_with_its_alias_and_children_in_document_order() {
    assert_eq!(
        key("{ node { key id other: title child { id } } }", &[]),
        "key:key;id:id;other:title;child:child{id:id;};"
    );
}

#[test]
fn variables_used_only_by_the_root_field_do_not_change_the_text() {
    let q = "query($f: String) { node(filter: $f) { key id } }";
    assert_eq!(
        key(q, &[("f", InputValue::scalar("mine".to_owned()))]),
        key(q, &[("f", InputValue::scalar("yours".to_owned()))])
    );
    assert_eq!(key(q, &[]), key("{ node(filter: \"x\") { key id } }", &[]));
}

#[test]
fn different_fields_aliases_or_nesting_give_different_texts() {
    let texts = [
        key("{ node { key id } }", &[]),
        key("{ node { key title } }", &[]),
        key("{ node { key id: title } }", &[]),
        key("{ node { key title: id } }", &[]),
        key("{ node { key child { id } } }", &[]),
        key("{ node { key child { title } } }", &[]),
        key("{ node { key id title } }", &[]),
        key("{ node { key title id } }", &[]),
    ];
    for (i, a) in texts.iter().enumerate() {
        for b in &texts[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn skip_and_include_are_applied_with_the_subscribers_variables() {
    let q = "query($v: Boolean!) { node { key id @include(if: $v) title @skip(if: $v) } }";
    let with = key(q, &[("v", boolean(true))]);
    let without = key(q, &[("v", boolean(false))]);
    assert_eq!(with, "key:key;id:id;");
    assert_eq!(without, "key:key;title:title;");
    assert_eq!(with, key("{ node { key id } }", &[]));
}

#[test]
fn fragments_expand_to_their_fields() {
    let spread = key(
        "{ node { key ...F } } fragment F on Node { id child { title } }",
        &[],
    );
    assert_eq!(spread, key("{ node { key id child { title } } }", &[]));
    // An inline fragment keeps its type condition.
    assert_eq!(
        key("{ node { key ... on Node { id } } }", &[]),
        "key:key;id:id on Node;"
    );
}

#[test]
fn arguments_are_written_with_their_variables_resolved_and_cannot_be_forged() {
    let by_variable = key(
        "query($n: Int!) { node { key sized(n: $n) } }",
        &[("n", InputValue::scalar(2))],
    );
    assert_eq!(by_variable, key("{ node { key sized(n: 2) } }", &[]));
    assert_eq!(by_variable, "key:key;sized:sized(n=2,);");
    assert_ne!(by_variable, key("{ node { key sized(n: 3) } }", &[]));
    // A string is quoted: its punctuation stays inside the value.
    assert_eq!(
        key(r#"{ node { key sized(n: 1, mode: "x,);id:id;") } }"#, &[]),
        r#"key:key;sized:sized(n=1,mode="x,);id:id;",);"#
    );
}
