//! HTTP routes: GraphQL over POST/GET ([`graphql`]), the WebSocket upgrade,
//! GraphiQL, health, readiness, metrics, the demo page, its cookie and its
//! writes ([`crate::demo`]). They are served by [`crate::server::serve`].

mod graphql;

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::auth::{self, AuthError};
use crate::state::{AppState, LoginError};
use crate::ws;
use graphql::ResponseType;

/// All routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    // Paths before methods: a request for an unknown path is then a 404,
    // not a 405 from whichever route checked the method first.
    let graphql_post = graphql::post(state.clone());
    let graphql_get = graphql::get(state.clone());
    // A page of our own that needs nothing from the network: juniper_warp's
    // GraphiQL loads its scripts from a CDN.
    let graphiql = warp::path("graphiql")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| page(include_str!("../static/graphiql.html")));
    let session = warp::path("session").and(warp::path::end());
    let session_start = session
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("origin"))
        .and(with_state.clone())
        .then(start_session);
    let session_end = session.and(warp::delete()).map(|| {
        set_cookie(
            StatusCode::NO_CONTENT,
            "JWT=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict",
        )
    });
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
        .then(crate::metrics::scrape);
    let index = warp::path::end()
        .and(warp::get())
        .map(|| page(include_str!("../static/index.html")));

    ws::route(state.clone())
        .or(crate::demo::route(state))
        .unify()
        .or(graphql_post)
        .unify()
        .or(graphql_get)
        .unify()
        .or(graphiql)
        .unify()
        .or(session_start)
        .unify()
        .or(session_end)
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

fn auth_error(e: &AuthError) -> Response {
    error_reply(StatusCode::UNAUTHORIZED, &e.to_string(), "UNAUTHENTICATED")
}

/// A refused token is 401; a token that could not be checked is 503.
fn login_error(e: &LoginError) -> Response {
    graphql::login_error(ResponseType::Json, e)
}

/// An HTML page of ours: never framed by other sites.
fn page(html: &'static str) -> Response {
    let reply = warp::reply::html(html);
    let reply = warp::reply::with_header(reply, "x-frame-options", "DENY");
    warp::reply::with_header(reply, "content-security-policy", "frame-ancestors 'none'")
        .into_response()
}

fn set_cookie(status: StatusCode, cookie: &str) -> Response {
    let reply = warp::reply::with_header(warp::reply(), "set-cookie", cookie);
    let reply = warp::reply::with_header(reply, "cache-control", "no-store");
    warp::reply::with_status(reply, status).into_response()
}

/// `POST /session` with a token in the `Authorization` header: sets the
/// `JWT` cookie to it, `HttpOnly` (page scripts cannot read it back),
/// `SameSite=Strict` (no other site's page or link makes the browser send
/// it), `Path=/`, `Secure` when the page is served over HTTPS, and expiring
/// with the token. The header is the credential here, so any page could
/// only ever set a cookie for a token it already holds.
async fn start_session(
    authorization: Option<String>,
    origin: Option<String>,
    state: Arc<AppState>,
) -> Response {
    let Some(token) = authorization.as_deref().and_then(auth::bearer) else {
        return auth_error(&AuthError::Missing);
    };
    let caller = match state.authenticate(Some(&token)).await {
        Ok(caller) => caller,
        Err(e) => return login_error(&e),
    };
    if !token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return auth_error(&AuthError::Invalid);
    }
    let mut cookie = format!("JWT={token}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(exp) = caller.exp {
        let left = (exp - chrono::Utc::now().timestamp()).max(0);
        cookie.push_str(&format!("; Max-Age={left}"));
    }
    if origin.is_some_and(|o| o.starts_with("https://")) {
        cookie.push_str("; Secure");
    }
    set_cookie(StatusCode::NO_CONTENT, &cookie)
}

fn error_reply(status: StatusCode, message: &str, code: &str) -> Response {
    graphql::error_reply(ResponseType::Json, status, message, code)
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
