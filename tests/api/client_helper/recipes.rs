//! The Apollo Client link (clients/js/recipes/apollo.js) and the urql
//! exchange (clients/js/recipes/urql.js): a query over HTTP under the
//! caller's token, a subscription through @pgherald/client, and a resume
//! across a graceful shutdown.

use serde_json::Value;

use super::resume::resumes_on_another_instance_after_a_graceful_shutdown;
use super::{notify, start, titles, until};
use crate::helpers::{WAIT, spawn_app};

/// `script` reads the caller's notifications over HTTP, then subscribes:
/// it reads only its own rows, and receives its own new row and not another
/// user's written before it.
async fn reads_over_http_and_subscribes(script: &str) {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let bob = app.user("bob@acme.test", &[&tenant]).await;
    notify(&app.admin, &tenant, &alice, &["alice's old one"]).await;
    notify(&app.admin, &tenant, &bob, &["bob's old one"]).await;
    let mut client = start(
        script,
        &[&app.ws_url],
        &app.token(&alice),
        &[
            ("HTTP_URL", format!("{}/graphql", app.http_url)),
            ("READ", "{ notifications { rows { title } } }".to_owned()),
        ],
    );
    let read = until(&mut client, "read", WAIT).await;
    let rows: Vec<&Value> = read["data"]["notifications"]["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("{read}"))
        .iter()
        .map(|r| &r["title"])
        .collect();
    assert_eq!(rows, ["alice's old one"], "{read}");

    until(&mut client, "connected", WAIT).await;
    app.wait_for_subscriptions(1).await;
    notify(&app.admin, &tenant, &bob, &["for bob"]).await;
    notify(&app.admin, &tenant, &alice, &["for alice"]).await;
    assert_eq!(titles(&mut client, 1, WAIT).await, ["for alice"]);
    client.kill().await;
}

#[tokio::test]
async fn apollo_client_with_the_recipe_link_queries_over_http_and_subscribes_through_the_client() {
    reads_over_http_and_subscribes("apollo.mjs").await;
}

#[tokio::test]
async fn apollo_client_with_the_recipe_link_resumes_on_another_instance_after_a_graceful_shutdown()
{
    resumes_on_another_instance_after_a_graceful_shutdown("apollo.mjs").await;
}

#[tokio::test]
async fn urql_with_the_recipe_exchange_queries_over_http_and_subscribes_through_the_client() {
    reads_over_http_and_subscribes("urql.mjs").await;
}

#[tokio::test]
async fn urql_with_the_recipe_exchange_resumes_on_another_instance_after_a_graceful_shutdown() {
    resumes_on_another_instance_after_a_graceful_shutdown("urql.mjs").await;
}
