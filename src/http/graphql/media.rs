//! Media types of GraphQL over HTTP: the one a response is sent as, chosen
//! from the request's `Accept`, and the one a POST body must be sent as.

/// The media type of a GraphQL response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseType {
    /// `application/graphql-response+json`: HTTP status codes say whether
    /// the request was valid (400 for a document that does not parse or
    /// validate, for variables that do not coerce).
    GraphqlResponse,
    /// `application/json`, the legacy type: such a request is answered 200
    /// with `errors`, as clients written before the spec expect.
    Json,
}

impl ResponseType {
    /// The `Content-Type` header of a response of this type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Self::Json => "application/json; charset=utf-8",
        }
    }
}

const GRAPHQL_RESPONSE: &str = "graphql-response+json";
const JSON: &str = "json";

/// The response type for a request's `Accept` header, or `None` when it
/// accepts neither type (the spec recommends 406 then).
///
/// Without the header (or with an empty one), `application/json`: the spec's
/// rule for clients that predate it. Quality values count; at equal quality,
/// `application/graphql-response+json` when the header names it, and
/// `application/json` otherwise, so that `*/*` gets `application/json`.
pub fn negotiate(accept: Option<&str>) -> Option<ResponseType> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(ResponseType::Json);
    };
    let ranges: Vec<Range> = accept.split(',').filter_map(Range::parse).collect();
    let graphql = quality(&ranges, GRAPHQL_RESPONSE);
    let json = quality(&ranges, JSON);
    match (graphql, json) {
        (None, None) => None,
        (Some(_), None) => Some(ResponseType::GraphqlResponse),
        (None, Some(_)) => Some(ResponseType::Json),
        (Some(g), Some(j)) if g.q > j.q || (g.q == j.q && g.exact) => {
            Some(ResponseType::GraphqlResponse)
        }
        (Some(_), Some(_)) => Some(ResponseType::Json),
    }
}

/// How much a request accepts one of our types.
#[derive(Clone, Copy, Debug)]
struct Quality {
    /// The quality value, in thousandths (HTTP allows three decimals).
    q: u16,
    /// Whether the range that gave it names the type itself.
    exact: bool,
}

/// One media range of an `Accept` header, lowercased.
struct Range {
    type_: String,
    subtype: String,
    q: u16,
    /// Whether a `charset` parameter names another encoding than UTF-8,
    /// the only one GraphQL responses are sent in.
    other_charset: bool,
}

impl Range {
    /// `None` for a range that does not parse: it matches nothing.
    fn parse(text: &str) -> Option<Range> {
        let mut parts = text.split(';');
        let (type_, subtype) = parts.next()?.trim().split_once('/')?;
        let (type_, subtype) = (type_.trim(), subtype.trim());
        if type_.is_empty() || subtype.is_empty() {
            return None;
        }
        let mut range = Range {
            type_: type_.to_ascii_lowercase(),
            subtype: subtype.to_ascii_lowercase(),
            q: 1000,
            other_charset: false,
        };
        for parameter in parts {
            let (name, value) = parameter.split_once('=')?;
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "q" => range.q = qvalue(value)?,
                "charset" => range.other_charset = !is_utf8(value),
                _ => {}
            }
        }
        Some(range)
    }

    /// How specifically this range names `application/<subtype>`: 3 for
    /// the type itself, 2 for `application/*`, 1 for `*/*`, `None` when it
    /// does not match it.
    fn specificity(&self, subtype: &str) -> Option<u8> {
        if self.other_charset {
            return None;
        }
        match (self.type_.as_str(), self.subtype.as_str()) {
            ("application", s) if s == subtype => Some(3),
            ("application", "*") => Some(2),
            ("*", "*") => Some(1),
            _ => None,
        }
    }
}

/// The quality of `application/<subtype>`: the one of the most specific
/// range that matches it (RFC 9110, 12.5.1); `None` if that is 0 or no
/// range matches.
fn quality(ranges: &[Range], subtype: &str) -> Option<Quality> {
    let (specificity, range) = ranges
        .iter()
        .filter_map(|r| Some((r.specificity(subtype)?, r)))
        .max_by_key(|(specificity, _)| *specificity)?;
    (range.q > 0).then_some(Quality {
        q: range.q,
        exact: specificity == 3,
    })
}

/// A quality value (`0`, `0.5`, `1.000`) in thousandths; `None` when it is
/// not one.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_utf8(charset: &str) -> bool {
    charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
}

/// Why a POST body's `Content-Type` is refused (415).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentTypeError {
    /// No `Content-Type` header.
    #[error("a POST to /graphql needs the header content-type: application/json")]
    Missing,
    /// Another media type.
    #[error("a POST to /graphql is read as application/json only, not {0}")]
    Unsupported(String),
    /// JSON in another encoding than UTF-8.
    #[error("a POST to /graphql is read as UTF-8 only, not charset {0}")]
    Charset(String),
}

/// Checks that a POST body is declared `application/json`, in UTF-8 if it
/// names a charset at all (a body without one is read as UTF-8).
pub fn check_request_type(content_type: Option<&str>) -> Result<(), ContentTypeError> {
    let content_type = content_type.ok_or(ContentTypeError::Missing)?;
    let mut parts = content_type.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ContentTypeError::Unsupported(essence.to_owned()));
    }
    for parameter in parts {
        if let Some((name, value)) = parameter.split_once('=') {
            let value = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("charset") && !is_utf8(value) {
                return Err(ContentTypeError::Charset(value.to_owned()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ResponseType::{GraphqlResponse, Json};
    use super::*;

    #[test]
    fn accept_headers_choose_the_response_type_the_spec_says() {
        for (accept, expected) in [
            (None, Some(Json)),
            (Some(""), Some(Json)),
            (
                Some("application/graphql-response+json"),
                Some(GraphqlResponse),
            ),
            (Some("application/json"), Some(Json)),
            (Some("*/*"), Some(Json)),
            (Some("application/*"), Some(Json)),
            (
                Some("application/graphql-response+json, application/json;q=0.9"),
                Some(GraphqlResponse),
            ),
            (
                Some("application/json, application/graphql-response+json"),
                Some(GraphqlResponse),
            ),
            (
                Some("application/graphql-response+json;q=0.5, application/json"),
                Some(Json),
            ),
            (
                Some("application/graphql-response+json, */*;q=0.1"),
                Some(GraphqlResponse),
            ),
            (Some("APPLICATION/JSON; Charset=UTF-8"), Some(Json)),
            (Some("application/json;q=0, */*"), Some(GraphqlResponse)),
            (Some("text/html, application/xhtml+xml"), None),
            (Some("application/json;q=0"), None),
            (Some("application/json; charset=iso-8859-1"), None),
            (Some("application/json;q=2"), None),
            (Some("nonsense"), None),
        ] {
            assert_eq!(negotiate(accept), expected, "{accept:?}");
        }
    }

    #[test]
    fn a_post_body_must_be_declared_json_in_utf_8() {
        assert_eq!(check_request_type(Some("application/json")), Ok(()));
        assert_eq!(
            check_request_type(Some("Application/JSON; charset=\"UTF-8\"")),
            Ok(())
        );
        assert_eq!(check_request_type(None), Err(ContentTypeError::Missing));
        assert!(matches!(
            check_request_type(Some("text/plain;charset=UTF-8")),
            Err(ContentTypeError::Unsupported(t)) if t == "text/plain"
        ));
        assert!(matches!(
            check_request_type(Some("application/x-www-form-urlencoded")),
            Err(ContentTypeError::Unsupported(_))
        ));
        assert!(matches!(
            check_request_type(Some("application/json; charset=latin1")),
            Err(ContentTypeError::Charset(c)) if c == "latin1"
        ));
    }
}
