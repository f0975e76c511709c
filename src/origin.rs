//! Where a request's credential comes from, and whether an ambient one (the
//! `JWT` cookie, which a browser attaches by itself) may be used from the
//! page that sent the request.
//!
//! A token in an `Authorization` header or a `connection_init` payload was
//! put there by the client's own code, so any origin may send one. The cookie
//! is honoured only when the request comes from the server's own origin
//! (`Origin` equal to the `Host` it was sent to) or from an origin listed in
//! `HERALD_ALLOWED_ORIGINS`. A request without `Origin` is taken as
//! same-origin unless the browser's `Sec-Fetch-Site` says it is not.

use crate::auth;

/// Origins allowed to use cookie authentication besides the server's own,
/// normalised (`scheme://host[:port]`, lower case, default port dropped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Parses a list of origins (`https://app.example.com`,
    /// `http://localhost:3000`); every invalid entry is one error line.
    pub fn parse(list: &[String]) -> Result<AllowedOrigins, Vec<String>> {
        let mut ok = Vec::new();
        let mut errors = Vec::new();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            match normalise(entry) {
                Some(origin) => ok.push(origin),
                None => errors.push(format!(
                    "HERALD_ALLOWED_ORIGINS: {entry:?} is not an origin (scheme://host[:port], \
                     scheme http or https, no path)"
                )),
            }
        }
        if errors.is_empty() {
            Ok(AllowedOrigins(ok))
        } else {
            Err(errors)
        }
    }

    /// Whether a request with these headers may authenticate with the cookie.
    pub fn cookie_allowed(&self, request: &RequestOrigin<'_>) -> bool {
        match request.origin {
            Some(origin) => {
                let Some(origin) = normalise(origin) else {
                    // "null" (sandboxed frames, file: pages) and anything odd.
                    return false;
                };
                self.0.contains(&origin) || request.host.is_some_and(|h| same_host(&origin, h))
            }
            // Browsers send Origin on every cross-origin request except
            // no-cors ones (an <img>, a navigation); those say so here.
            None => !matches!(request.fetch_site, Some("cross-site" | "same-site")),
        }
    }
}

/// The headers that say where a request comes from.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestOrigin<'a> {
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Host`.
    pub host: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub fetch_site: Option<&'a str>,
}

/// A request's credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// No token at all.
    None,
    /// A token from the `Authorization` header.
    Header(String),
    /// A token from the `JWT` cookie, sent from an allowed origin.
    Cookie(String),
    /// A `JWT` cookie sent from an origin that may not use it.
    RefusedCookie,
}

impl Credential {
    /// The credential of a request: the `Authorization` header wins; the
    /// cookie counts only from an allowed origin.
    pub fn of(
        authorization: Option<&str>,
        cookie: Option<&str>,
        request: &RequestOrigin<'_>,
        allowed: &AllowedOrigins,
    ) -> Credential {
        if let Some(token) = authorization.and_then(auth::bearer) {
            return Credential::Header(token);
        }
        match cookie.and_then(auth::token_from_cookie) {
            None => Credential::None,
            Some(token) if allowed.cookie_allowed(request) => Credential::Cookie(token),
            Some(_) => Credential::RefusedCookie,
        }
    }

    /// The token, if one may be used.
    pub fn token(&self) -> Option<&str> {
        match self {
            Credential::Header(t) | Credential::Cookie(t) => Some(t),
            Credential::None | Credential::RefusedCookie => None,
        }
    }
}

/// `scheme://host[:port]` in lower case without the scheme's default port;
/// `None` for anything else.
fn normalise(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || authority.contains(['/', '?', '#', '@', ' ', '*'])
        || authority.ends_with(':')
    {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether the normalised `origin` names the host the request was sent to.
fn same_host(origin: &str, host: &str) -> bool {
    let Some((scheme, _)) = origin.split_once("://") else {
        return false;
    };
    normalise(&format!("{scheme}://{}", host.trim())).is_some_and(|h| h == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(origin: Option<&'a str>, host: &'a str, site: Option<&'a str>) -> RequestOrigin<'a> {
        RequestOrigin {
            origin,
            host: Some(host),
            fetch_site: site,
        }
    }

    #[test]
    fn the_cookie_counts_from_the_same_origin_and_listed_origins_only() {
        let none = AllowedOrigins::default();
        let listed = AllowedOrigins::parse(&["https://App.example.com/".into()]).unwrap();
        let host = "api.example.com";
        for (origin, site, default_ok, listed_ok) in [
            (None, None, true, true),
            (None, Some("same-origin"), true, true),
            (None, Some("none"), true, true),
            (None, Some("cross-site"), false, false),
            (None, Some("same-site"), false, false),
            (Some("http://api.example.com"), None, true, true),
            (Some("https://api.example.com:443"), None, true, true),
            (Some("https://API.example.com"), None, true, true),
            (Some("https://api.example.com:8443"), None, false, false),
            (Some("https://app.example.com"), None, false, true),
            (Some("http://app.example.com"), None, false, false),
            (Some("https://evil.test"), None, false, false),
            (Some("null"), None, false, false),
        ] {
            let r = req(origin, host, site);
            assert_eq!(none.cookie_allowed(&r), default_ok, "{origin:?} {site:?}");
            assert_eq!(listed.cookie_allowed(&r), listed_ok, "{origin:?} {site:?}");
        }
        // A Host with a port compares with it.
        let r = req(Some("http://127.0.0.1:8080"), "127.0.0.1:8080", None);
        assert!(none.cookie_allowed(&r));
        let r = req(Some("http://127.0.0.1:9090"), "127.0.0.1:8080", None);
        assert!(!none.cookie_allowed(&r));
    }

    #[test]
    fn a_header_token_wins_and_any_origin_may_send_one() {
        let none = AllowedOrigins::default();
        let foreign = req(Some("https://evil.test"), "api.example.com", None);
        assert_eq!(
            Credential::of(Some("Bearer h"), Some("JWT=c"), &foreign, &none),
            Credential::Header("h".into())
        );
        assert_eq!(
            Credential::of(None, Some("JWT=c"), &foreign, &none),
            Credential::RefusedCookie
        );
        let own = req(None, "api.example.com", None);
        assert_eq!(
            Credential::of(None, Some("JWT=c"), &own, &none),
            Credential::Cookie("c".into())
        );
        assert_eq!(
            Credential::of(None, None, &foreign, &none),
            Credential::None
        );
    }

    #[test]
    fn invalid_allowed_origins_are_one_error_each() {
        let errors = AllowedOrigins::parse(&[
            "https://ok.example".into(),
            "ftp://x".into(),
            "https://x/path".into(),
            "*".into(),
        ])
        .unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("ftp://x"));
    }
}
