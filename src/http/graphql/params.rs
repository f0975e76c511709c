//! The parameters of a GraphQL-over-HTTP request, from a POST's JSON body or
//! a GET's URL, checked for the shapes the spec gives them before anything
//! runs: a request that breaks them is not well-formed (400, whatever the
//! media type).

use std::collections::HashMap;

use serde_json::{Map, Value};

/// A well-formed request's parameters.
#[derive(Debug, PartialEq)]
pub struct Params {
    /// The GraphQL document.
    pub query: String,
    /// The operation to run, when the document holds several.
    pub operation_name: Option<String>,
    /// The variables' values, a JSON object.
    pub variables: Option<Map<String, Value>>,
}

impl Params {
    /// The request as juniper reads it: `{query, operationName, variables}`.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("query".into(), Value::String(self.query.clone()));
        if let Some(name) = &self.operation_name {
            body.insert("operationName".into(), Value::String(name.clone()));
        }
        if let Some(variables) = &self.variables {
            body.insert("variables".into(), Value::Object(variables.clone()));
        }
        Value::Object(body)
    }
}

/// Why a request is not well-formed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamsError {
    /// The POST body is empty.
    #[error("the request body is empty; send a JSON object with a query")]
    EmptyBody,
    /// The POST body is not JSON.
    #[error("the request body is not JSON: {0}")]
    NotJson(String),
    /// The POST body is JSON, but not an object.
    #[error("the request body must be a JSON object of request parameters")]
    NotAnObject,
    /// No `query` parameter.
    #[error("the query parameter is missing")]
    MissingQuery,
    /// A parameter of the wrong type.
    #[error("the {name} parameter must be {expected}")]
    WrongType {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A GET's `variables` or `extensions` that is not JSON text.
    #[error("the {name} parameter is not JSON: {message}")]
    ParameterNotJson {
        /// The parameter.
        name: &'static str,
        /// serde_json's reason.
        message: String,
    },
}

/// The parameters of a POST's body.
pub fn from_body(body: &[u8]) -> Result<Params, ParamsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ParamsError::EmptyBody);
    }
    let body: Value =
        serde_json::from_slice(body).map_err(|e| ParamsError::NotJson(e.to_string()))?;
    let Value::Object(mut body) = body else {
        return Err(ParamsError::NotAnObject);
    };
    let query = match body.remove("query") {
        None | Some(Value::Null) => return Err(ParamsError::MissingQuery),
        Some(Value::String(query)) => query,
        Some(_) => return Err(wrong_type("query", "a string")),
    };
    let operation_name = match body.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => return Err(wrong_type("operationName", "a string or null")),
    };
    let variables = object_or_null(body.remove("variables"), "variables")?;
    // Extensions mean nothing to this server, but must be well-formed.
    object_or_null(body.remove("extensions"), "extensions")?;
    Ok(Params {
        query,
        operation_name,
        variables,
    })
}

/// The parameters of a GET's URL: `variables` and `extensions` as JSON text.
pub fn from_url(params: &HashMap<String, String>) -> Result<Params, ParamsError> {
    let query = params.get("query").ok_or(ParamsError::MissingQuery)?;
    let json = |name: &'static str| -> Result<Option<Map<String, Value>>, ParamsError> {
        let Some(text) = params.get(name) else {
            return Ok(None);
        };
        let value = serde_json::from_str(text).map_err(|e| ParamsError::ParameterNotJson {
            name,
            message: e.to_string(),
        })?;
        object_or_null(Some(value), name)
    };
    let variables = json("variables")?;
    json("extensions")?;
    Ok(Params {
        query: query.clone(),
        operation_name: params.get("operationName").cloned(),
        variables,
    })
}

fn object_or_null(
    value: Option<Value>,
    name: &'static str,
) -> Result<Option<Map<String, Value>>, ParamsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(wrong_type(name, "a JSON object or null")),
    }
}

fn wrong_type(name: &'static str, expected: &'static str) -> ParamsError {
    ParamsError::WrongType { name, expected }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn post(body: Value) -> Result<Params, ParamsError> {
        from_body(body.to_string().as_bytes())
    }

    #[test]
    fn a_post_body_gives_its_parameters_and_null_ones_count_as_absent() {
        let params = post(json!({
            "query": "query Q($n: String) { cursor }",
            "operationName": "Q",
            "variables": {"n": "x"},
            "extensions": {"some": "value"},
        }))
        .unwrap();
        assert_eq!(params.query, "query Q($n: String) { cursor }");
        assert_eq!(params.operation_name.as_deref(), Some("Q"));
        assert_eq!(
            params.variables,
            Some(json!({"n": "x"}).as_object().cloned().unwrap())
        );
        assert_eq!(
            params.to_json(),
            json!({"query": "query Q($n: String) { cursor }", "operationName": "Q", "variables": {"n": "x"}})
        );

        let params = post(json!({
            "query": "{ cursor }", "operationName": null, "variables": null, "extensions": null,
        }))
        .unwrap();
        assert_eq!(params.to_json(), json!({"query": "{ cursor }"}));
    }

    #[test]
    fn post_bodies_of_the_wrong_shape_are_refused_with_the_parameter_named() {
        assert_eq!(from_body(b""), Err(ParamsError::EmptyBody));
        assert!(matches!(
            from_body(b"{ \"not a JSON"),
            Err(ParamsError::NotJson(_))
        ));
        assert_eq!(post(json!(["{ cursor }"])), Err(ParamsError::NotAnObject));
        assert_eq!(
            post(json!({"qeury": "{ cursor }"})),
            Err(ParamsError::MissingQuery)
        );
        for (body, name) in [
            (json!({"query": {"obj": "ect"}}), "query"),
            (json!({"query": 0}), "query"),
            (json!({"query": false}), "query"),
            (json!({"query": ["array"]}), "query"),
            (
                json!({"query": "{ cursor }", "operationName": 0}),
                "operationName",
            ),
            (
                json!({"query": "{ cursor }", "operationName": ["Q"]}),
                "operationName",
            ),
            (
                json!({"query": "{ cursor }", "variables": "string"}),
                "variables",
            ),
            (
                json!({"query": "{ cursor }", "variables": false}),
                "variables",
            ),
            (json!({"query": "{ cursor }", "variables": []}), "variables"),
            (
                json!({"query": "{ cursor }", "extensions": 0}),
                "extensions",
            ),
            (
                json!({"query": "{ cursor }", "extensions": ["array"]}),
                "extensions",
            ),
        ] {
            match post(body.clone()) {
                Err(ParamsError::WrongType { name: n, .. }) => assert_eq!(n, name, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_urls_variables_and_extensions_are_json_objects() {
        let url = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let params = from_url(&url(&[
            ("query", "query Q($n: String) { cursor }"),
            ("operationName", "Q"),
            ("variables", r#"{"n": "x"}"#),
            ("extensions", "null"),
        ]))
        .unwrap();
        assert_eq!(params.operation_name.as_deref(), Some("Q"));
        assert_eq!(params.variables.unwrap()["n"], "x");

        assert_eq!(from_url(&url(&[])), Err(ParamsError::MissingQuery));
        assert!(matches!(
            from_url(&url(&[("query", "{ cursor }"), ("variables", "{")])),
            Err(ParamsError::ParameterNotJson {
                name: "variables",
                ..
            })
        ));
        assert!(matches!(
            from_url(&url(&[("query", "{ cursor }"), ("extensions", "[1]")])),
            Err(ParamsError::WrongType {
                name: "extensions",
                ..
            })
        ));
    }
}
