//! GraphQL over HTTP (`POST` and `GET /graphql`), as the GraphQL-over-HTTP
//! spec has it: the response's media type is negotiated from `Accept`
//! ([`media`]), a request's parameters are checked before anything runs
//! ([`params`]), and the status code follows the media type: with
//! `application/graphql-response+json` a document that does not parse or
//! validate, or variables that do not coerce, are a 400; with
//! `application/json` they are a 200 with `errors`, as older clients expect.

mod media;
pub(super) use media::ResponseType;
mod params;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use juniper::http::GraphQLRequest;
use juniper::{Definition, OperationType};
use serde_json::json;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use self::params::Params;
use crate::graphql::limits;
use crate::graphql::request::prepare_variables;
use crate::graphql::scalar::Scalar;
use crate::origin::{Credential, RequestOrigin};
use crate::state::{AppState, LoginError};

/// `POST /graphql`: a JSON body of request parameters.
pub fn post(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    let max_body = state.limits.max_message_bytes as u64;
    warp::path("graphql")
        .and(warp::path::end())
        .and(warp::post())
        .and(warp::header::optional::<String>("accept"))
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::content_length_limit(max_body))
        .and(warp::body::bytes())
        .and(credential(state.clone()))
        .then(move |accept, content_type, body, credential| {
            handle_post(accept, content_type, body, credential, state.clone())
        })
}

/// `GET /graphql`: the parameters in the URL; queries only.
pub fn get(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static {
    warp::path("graphql")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::optional::<String>("accept"))
        .and(warp::query::<HashMap<String, String>>())
        .and(credential(state.clone()))
        .then(move |accept, url, credential| handle_get(accept, url, credential, state.clone()))
}

/// The credential of a request (see [`crate::origin`]).
fn credential(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Credential,), Error = Rejection> + Clone {
    use warp::header::optional;
    optional::<String>("authorization")
        .and(optional::<String>("cookie"))
        .and(optional::<String>("origin"))
        .and(optional::<String>("host"))
        .and(optional::<String>("sec-fetch-site"))
        .map(
            move |authorization: Option<String>,
                  cookie: Option<String>,
                  origin: Option<String>,
                  host: Option<String>,
                  fetch_site: Option<String>| {
                let request = RequestOrigin {
                    origin: origin.as_deref(),
                    host: host.as_deref(),
                    fetch_site: fetch_site.as_deref(),
                };
                Credential::of(
                    authorization.as_deref(),
                    cookie.as_deref(),
                    &request,
                    &state.origins,
                )
            },
        )
}

async fn handle_post(
    accept: Option<String>,
    content_type: Option<String>,
    body: Bytes,
    credential: Credential,
    state: Arc<AppState>,
) -> Response {
    let Some(media) = media::negotiate(accept.as_deref()) else {
        return not_acceptable();
    };
    if let Err(e) = media::check_request_type(content_type.as_deref()) {
        let status = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return error_reply(media, status, &e.to_string(), "BAD_REQUEST");
    }
    match params::from_body(&body) {
        Ok(params) => execute(media, params, credential, &state).await,
        Err(e) => error_reply(
            media,
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            "BAD_REQUEST",
        ),
    }
}

async fn handle_get(
    accept: Option<String>,
    url: HashMap<String, String>,
    credential: Credential,
    state: Arc<AppState>,
) -> Response {
    let Some(media) = media::negotiate(accept.as_deref()) else {
        return not_acceptable();
    };
    let params = match params::from_url(&url) {
        Ok(params) => params,
        Err(e) => {
            return error_reply(
                media,
                StatusCode::BAD_REQUEST,
                &e.to_string(),
                "BAD_REQUEST",
            );
        }
    };
    if let Some(kind) = non_query_operation(&state, &params) {
        return get_refused(media, kind);
    }
    execute(media, params, credential, &state).await
}

/// Runs a well-formed request as its caller.
async fn execute(
    media: ResponseType,
    params: Params,
    credential: Credential,
    state: &AppState,
) -> Response {
    if credential == Credential::RefusedCookie {
        return foreign_cookie(media);
    }
    let caller = match state.authenticate(credential.token()).await {
        Ok(caller) => caller,
        Err(e) => return login_error(media, &e),
    };
    let mut body = params.to_json();
    // Refused before it runs, like a document that does not validate.
    if let Err(e) = limits::check_payload(&body, &state.limits.cost) {
        let status = request_error_status(media);
        return error_reply(media, status, &e.to_string(), "BAD_USER_INPUT");
    }
    if let Some(vars) = body.get_mut("variables") {
        prepare_variables(&params.query, vars);
    }
    let request: GraphQLRequest<Scalar> = match serde_json::from_value(body) {
        Ok(r) => r,
        Err(e) => {
            let message = format!("variables that cannot be read: {e}");
            return error_reply(
                media,
                request_error_status(media),
                &message,
                "BAD_USER_INPUT",
            );
        }
    };
    let context = state.context(caller);
    let response = request.execute(&*state.schema.current(), &context).await;
    // Not ok: the document did not parse or validate, its variables did not
    // coerce, or it names no operation it can run; nothing ran.
    let status = if response.is_ok() {
        StatusCode::OK
    } else {
        request_error_status(media)
    };
    reply(media, status, &response)
}

/// The status of a request that was well-formed but could not run.
fn request_error_status(media: ResponseType) -> StatusCode {
    match media {
        ResponseType::GraphqlResponse => StatusCode::BAD_REQUEST,
        ResponseType::Json => StatusCode::OK,
    }
}

/// The type of the operation a GET request would run, when it is not a
/// query. Text that does not parse is left to the executor to report.
fn non_query_operation(state: &AppState, params: &Params) -> Option<OperationType> {
    let schema = state.schema.current();
    let document =
        juniper::parser::parse_document_source::<Scalar>(&params.query, &schema.schema).ok()?;
    let operation_name = params.operation_name.as_deref();
    document
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(op) => Some(&op.item),
            Definition::Fragment(_) => None,
        })
        // With a name, the named operation; without one, any operation:
        // a GET must not be able to pick a mutation by any reading.
        .filter(|op| {
            operation_name.is_none_or(|name| op.name.as_ref().is_some_and(|n| n.item == name))
        })
        .map(|op| op.operation_type)
        .find(|t| *t != OperationType::Query)
}

/// GET runs queries only: browsers send GETs on their own (links, images),
/// so nothing a GET runs may change state or hold a stream open.
fn get_refused(media: ResponseType, kind: OperationType) -> Response {
    let (what, how) = match kind {
        OperationType::Mutation => ("mutations", "send them with POST"),
        _ => ("subscriptions", "open them over WebSocket"),
    };
    let message = format!("GET /graphql runs queries only; {what} are refused ({how})");
    let reply = error_reply(
        media,
        StatusCode::METHOD_NOT_ALLOWED,
        &message,
        "BAD_REQUEST",
    );
    warp::reply::with_header(reply, "allow", "POST").into_response()
}

/// A refused token is 401; a token that could not be checked is 503.
pub(super) fn login_error(media: ResponseType, e: &LoginError) -> Response {
    let (status, code) = e.http_status();
    error_reply(media, status, &e.to_string(), code)
}

/// A request whose only credential is the cookie, from an origin that may not use it.
fn foreign_cookie(media: ResponseType) -> Response {
    error_reply(
        media,
        StatusCode::FORBIDDEN,
        "the JWT cookie is not accepted from this origin (HERALD_ALLOWED_ORIGINS); \
         send the token in an Authorization header",
        "FORBIDDEN",
    )
}

/// 406: the request accepts neither media type; said in `application/json`.
fn not_acceptable() -> Response {
    error_reply(
        ResponseType::Json,
        StatusCode::NOT_ACCEPTABLE,
        "GraphQL responses are application/graphql-response+json or application/json; \
         the Accept header allows neither",
        "NOT_ACCEPTABLE",
    )
}

/// `{"errors": [{message, extensions: {code}}]}` with `status`, as `media`.
pub(super) fn error_reply(
    media: ResponseType,
    status: StatusCode,
    message: &str,
    code: &str,
) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    reply(media, status, &body)
}

/// `body` as JSON of the media type `media`.
fn reply(media: ResponseType, status: StatusCode, body: &impl serde::Serialize) -> Response {
    let reply = warp::reply::json(body);
    let reply = warp::reply::with_header(reply, "content-type", media.content_type());
    warp::reply::with_status(reply, status).into_response()
}
