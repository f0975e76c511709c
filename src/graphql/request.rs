//! Request preparation shared by HTTP and WebSocket: GraphQL validation lets
//! only strings reach a scalar, so JSON objects passed in variables declared
//! as `JSON` are handed to the `JSON` scalar as JSON text.

use serde_json::Value;

/// Rewrites object and list values of `JSON`-typed variables in `variables`
/// into JSON text, which the `JSON` scalar parses back.
pub fn prepare_variables(query: &str, variables: &mut Value) {
    let Value::Object(vars) = variables else {
        return;
    };
    for name in json_variables(query) {
        if let Some(v) = vars.get_mut(&name) {
            if v.is_object() || v.is_array() {
                *v = Value::String(v.to_string());
            }
        }
    }
}

/// Names of variables declared with type `JSON` or `JSON!`.
fn json_variables(query: &str) -> Vec<String> {
    let code = strip_strings_and_comments(query);
    let bytes = code.as_bytes();
    let mut names = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_') {
            j += 1;
        }
        let name = &code[start..j];
        let mut k = j;
        while k < bytes.len() && bytes[k].is_ascii_whitespace() {
            k += 1;
        }
        if k < bytes.len() && bytes[k] == b':' {
            k += 1;
            while k < bytes.len() && bytes[k].is_ascii_whitespace() {
                k += 1;
            }
            let t = k;
            while k < bytes.len() && (bytes[k].is_ascii_alphanumeric() || bytes[k] == b'_') {
                k += 1;
            }
            if &code[t..k] == "JSON" && !name.is_empty() {
                names.push(name.to_owned());
            }
        }
        i = j.max(i + 1);
    }
    names
}

/// The query with string literals and comments blanked out.
fn strip_strings_and_comments(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push(' ');
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_typed_variables_become_json_text_and_others_do_not() {
        let query = r#"subscription S($f: JSON, $t: String!, $g:JSON!) {
            # $x: JSON in a comment
            changes(table: $t, filter: $f) { op }
        }"#;
        let mut vars = json!({"f": {"a": {"eq": 1}}, "t": "documents", "g": [1], "x": {"y": 1}});
        prepare_variables(query, &mut vars);
        assert_eq!(vars["f"], json!(r#"{"a":{"eq":1}}"#));
        assert_eq!(vars["g"], json!("[1]"));
        assert_eq!(vars["t"], json!("documents"));
        assert_eq!(vars["x"], json!({"y": 1}));
    }
}
