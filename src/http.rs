//! HTTP routes: GraphQL over POST/GET, the WebSocket upgrade, GraphiQL,
//! health, readiness, metrics and the demo page.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use juniper::http::GraphQLRequest;

use crate::graphql::scalar::Scalar;
use serde_json::{Value, json};
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::auth::{self, AuthError};
use crate::graphql::request::prepare_variables;
use crate::state::AppState;
use crate::ws;

/// All routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let token = warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("cookie"))
        .map(|authorization: Option<String>, cookie: Option<String>| {
            authorization
                .as_deref()
                .and_then(auth::bearer)
                .or_else(|| cookie.as_deref().and_then(auth::token_from_cookie))
        });
    let max_body = state.limits.max_message_bytes as u64;

    // Paths before methods: a request for an unknown path is then a 404,
    // not a 405 from whichever route checked the method first.
    let graphql_post = warp::path("graphql")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::body::content_length_limit(max_body))
        .and(warp::body::json::<Value>())
        .and(token)
        .and(with_state.clone())
        .then(execute);
    let graphql_get = warp::path("graphql")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::query::<std::collections::HashMap<String, String>>())
        .and(token)
        .and(with_state.clone())
        .then(
            |params: std::collections::HashMap<String, String>, token, state| async move {
                let mut body = json!({
                    "query": params.get("query").cloned().unwrap_or_default(),
                    "operationName": params.get("operationName"),
                });
                if let Some(vars) = params.get("variables") {
                    match serde_json::from_str(vars) {
                        Ok(vars) => body["variables"] = vars,
                        Err(e) => {
                            let message = format!("variables are not JSON: {e}");
                            return error_reply(StatusCode::BAD_REQUEST, &message, "BAD_REQUEST");
                        }
                    }
                }
                execute(body, token, state).await
            },
        );
    let graphiql = warp::path("graphiql")
        .and(warp::path::end())
        .and(warp::get())
        .and(juniper_warp::graphiql_filter("/graphql", Some("/graphql")))
        .map(|page: warp::http::Response<Vec<u8>>| page.into_response());
    let healthz = warp::path("healthz")
        .and(warp::path::end())
        .map(|| warp::reply::with_status("ok\n", StatusCode::OK).into_response());
    let readyz = warp::path("readyz")
        .and(warp::path::end())
        .and(with_state.clone())
        .then(readyz);
    let metrics = warp::path("metrics")
        .and(warp::path::end())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| metrics(&state).into_response());
    let index = warp::path::end()
        .and(warp::get())
        .map(|| warp::reply::html(include_str!("../static/index.html")).into_response());

    ws::route(state)
        .or(graphql_post)
        .unify()
        .or(graphql_get)
        .unify()
        .or(graphiql)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(index)
        .unify()
        .recover(rejection)
        .unify()
}

async fn execute(mut body: Value, token: Option<String>, state: Arc<AppState>) -> Response {
    let caller = match state.authenticate(token.as_deref()).await {
        Ok(caller) => caller,
        Err(e) => return auth_error(&e),
    };
    if let Some(query) = body.get("query").and_then(Value::as_str).map(str::to_owned) {
        if let Some(vars) = body.get_mut("variables") {
            prepare_variables(&query, vars);
        }
    }
    let request: GraphQLRequest<Scalar> = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                &format!("invalid GraphQL request: {e}"),
                "BAD_REQUEST",
            );
        }
    };
    let context = state.context(caller);
    let response = request.execute(&*state.schema.current(), &context).await;
    let status = if response.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    warp::reply::with_status(warp::reply::json(&response), status).into_response()
}

fn auth_error(e: &AuthError) -> Response {
    error_reply(StatusCode::UNAUTHORIZED, &e.to_string(), "UNAUTHENTICATED")
}

fn error_reply(status: StatusCode, message: &str, code: &str) -> Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"errors": [{"message": message, "extensions": {"code": code}}]})),
        status,
    )
    .into_response()
}

async fn readyz(state: Arc<AppState>) -> Response {
    // The internal pool: a flood of client queries does not make the instance unready.
    let db_ok = match state.internal_pool.get().await {
        Ok(client) => client.simple_query("select 1").await.is_ok(),
        Err(_) => false,
    };
    let listener_ok = state.listener.is_connected();
    let status = if db_ok && listener_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    warp::reply::with_status(
        warp::reply::json(&json!({"database": db_ok, "listener": listener_ok})),
        status,
    )
    .into_response()
}

fn metrics(state: &AppState) -> String {
    let l = &state.listener;
    let open = state.limits.max_connections - state.connection_permits.available_permits();
    let a = state.hub.authorizer_stats();
    format!(
        "# TYPE pgherald_listener_connected gauge\npgherald_listener_connected {}\n\
         # TYPE pgherald_listener_connects_total counter\npgherald_listener_connects_total {}\n\
         # TYPE pgherald_events_total counter\npgherald_events_total {}\n\
         # TYPE pgherald_deliveries_total counter\npgherald_deliveries_total {}\n\
         # TYPE pgherald_slow_consumers_total counter\npgherald_slow_consumers_total {}\n\
         # TYPE pgherald_subscriptions gauge\npgherald_subscriptions {}\n\
         # TYPE pgherald_websocket_connections gauge\npgherald_websocket_connections {}\n\
         # TYPE pgherald_authorizer_contexts_failed_total counter\npgherald_authorizer_contexts_failed_total {}\n\
         # TYPE pgherald_authorizer_rows_hidden_by_errors_total counter\npgherald_authorizer_rows_hidden_by_errors_total {}\n\
         # TYPE pgherald_authorizer_isolated_pages_total counter\npgherald_authorizer_isolated_pages_total {}\n\
         # TYPE pgherald_context_failed_subscriptions_total counter\npgherald_context_failed_subscriptions_total {}\n\
         # TYPE pgherald_listener_heartbeat_sent gauge\npgherald_listener_heartbeat_sent {}\n\
         # TYPE pgherald_listener_heartbeat_seen gauge\npgherald_listener_heartbeat_seen {}\n\
         # TYPE pgherald_listener_foreign_heartbeats_total counter\npgherald_listener_foreign_heartbeats_total {}\n",
        u8::from(l.is_connected()),
        l.connects.load(Ordering::Relaxed),
        l.events.load(Ordering::Relaxed),
        l.deliveries.load(Ordering::Relaxed),
        l.overflows.load(Ordering::Relaxed),
        state.hub.subscription_count(),
        open,
        a.contexts_failed.load(Ordering::Relaxed),
        a.rows_hidden_by_errors.load(Ordering::Relaxed),
        a.isolated_pages.load(Ordering::Relaxed),
        a.subscriptions_ended.load(Ordering::Relaxed),
        l.heartbeat_sent.load(Ordering::Relaxed),
        l.heartbeat_seen.load(Ordering::Relaxed),
        l.foreign_heartbeats.load(Ordering::Relaxed),
    )
}

async fn rejection(err: Rejection) -> Result<Response, Infallible> {
    let (status, message) = if err.is_not_found() {
        (StatusCode::NOT_FOUND, "not found".to_owned())
    } else if let Some(e) = err.find::<warp::body::BodyDeserializeError>() {
        (StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}"))
    } else if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large".to_owned(),
        )
    } else if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_owned(),
        )
    } else {
        (StatusCode::BAD_REQUEST, "bad request".to_owned())
    };
    Ok(error_reply(status, &message, "BAD_REQUEST"))
}
