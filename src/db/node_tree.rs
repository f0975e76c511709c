//! Reading `pg_node_tree` text, the form in which Postgres stores a parsed
//! expression (a policy's `USING` clause, a view's query), so that routing
//! can see an expression's structure (which column is compared with what,
//! which tables and functions it reaches) instead of guessing from SQL text.
//!
//! The format is Postgres's `outfuncs.c`: a node is `{NAME :field value
//! ...}`, a list `(...)`, an empty value `<>`, and anything else a token
//! (backslash escapes a character, double quotes wrap a string).

/// A value in a node tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `{NAME :field value ...}`.
    Node(Node),
    /// `(a b c)`.
    List(Vec<Value>),
    /// A token or string, unescaped.
    Token(String),
    /// `<>`.
    Empty,
}

/// One node: its type name and its fields in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node type, such as `OPEXPR`.
    pub name: String,
    /// `(field, value)` in the order written.
    pub fields: Vec<(String, Value)>,
}

/// The text is not a node tree this module can read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("unreadable node tree at byte {0}")]
pub struct Unreadable(pub usize);

impl Node {
    /// The value of `field`.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, v)| v)
    }

    /// The token of `field`.
    pub fn token(&self, field: &str) -> Option<&str> {
        match self.get(field)? {
            Value::Token(t) => Some(t),
            _ => None,
        }
    }

    /// The token of `field`, as a number.
    pub fn number(&self, field: &str) -> Option<i64> {
        self.token(field)?.parse().ok()
    }

    /// The node of `field`.
    pub fn node(&self, field: &str) -> Option<&Node> {
        match self.get(field)? {
            Value::Node(n) => Some(n),
            _ => None,
        }
    }

    /// The elements of the list `field` (none when empty).
    pub fn list(&self, field: &str) -> &[Value] {
        match self.get(field) {
            Some(Value::List(items)) => items,
            _ => &[],
        }
    }

    /// Every node in this one's subtree, this one included, depth first.
    pub fn walk(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            out.push(node);
            let mut values: Vec<&Value> = node.fields.iter().map(|(_, v)| v).collect();
            while let Some(value) = values.pop() {
                match value {
                    Value::Node(n) => stack.push(n),
                    Value::List(items) => values.extend(items),
                    Value::Token(_) | Value::Empty => {}
                }
            }
        }
        out
    }
}

impl Value {
    /// The node, if this is one.
    pub fn as_node(&self) -> Option<&Node> {
        match self {
            Value::Node(n) => Some(n),
            _ => None,
        }
    }
}

/// Parses one value (usually a node) from `text`.
pub fn parse(text: &str) -> Result<Value, Unreadable> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        at: 0,
    };
    let value = parser.value()?;
    parser.skip_space();
    match parser.at == parser.bytes.len() {
        true => Ok(value),
        false => Err(Unreadable(parser.at)),
    }
}

struct Parser<'t> {
    bytes: &'t [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.bytes.get(self.at).copied()
    }

    fn value(&mut self) -> Result<Value, Unreadable> {
        match self.peek() {
            Some(b'{') => {
                self.at += 1;
                self.node().map(Value::Node)
            }
            Some(b'(') => {
                self.at += 1;
                let mut items = Vec::new();
                while self.peek() != Some(b')') {
                    if self.peek().is_none() {
                        return Err(Unreadable(self.at));
                    }
                    items.push(self.value()?);
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            Some(b'[') => {
                // A constant's bytes: `[ 1 0 0 0 ]`.
                let mut items = Vec::new();
                self.at += 1;
                while self.peek() != Some(b']') {
                    if self.peek().is_none() {
                        return Err(Unreadable(self.at));
                    }
                    items.push(Value::Token(self.token()?));
                }
                self.at += 1;
                Ok(Value::List(items))
            }
            Some(b'<') if self.bytes.get(self.at + 1) == Some(&b'>') => {
                self.at += 2;
                Ok(Value::Empty)
            }
            Some(b'}' | b')' | b']') | None => Err(Unreadable(self.at)),
            Some(_) => self.token().map(Value::Token),
        }
    }

    fn node(&mut self) -> Result<Node, Unreadable> {
        let name = self.token()?;
        let mut fields = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Node { name, fields });
                }
                Some(b':') => {
                    let field = self.token()?;
                    let mut value = match self.peek() {
                        Some(b':' | b'}') => Value::Empty,
                        _ => self.value()?,
                    };
                    if self.peek() == Some(b'[') {
                        // A constant's length, then its bytes.
                        value = Value::List(vec![value, self.value()?]);
                    }
                    fields.push((field[1..].to_owned(), value));
                }
                _ => return Err(Unreadable(self.at)),
            }
        }
    }

    /// A bare token (backslash escapes) or a double-quoted string.
    fn token(&mut self) -> Result<String, Unreadable> {
        self.skip_space();
        let start = self.at;
        let mut out = Vec::new();
        if self.bytes.get(self.at) == Some(&b'"') {
            self.at += 1;
            loop {
                match self.bytes.get(self.at) {
                    Some(b'"') => {
                        self.at += 1;
                        break;
                    }
                    Some(b'\\') if self.at + 1 < self.bytes.len() => {
                        out.push(self.bytes[self.at + 1]);
                        self.at += 2;
                    }
                    Some(&b) => {
                        out.push(b);
                        self.at += 1;
                    }
                    None => return Err(Unreadable(start)),
                }
            }
        } else {
            while let Some(&b) = self.bytes.get(self.at) {
                if b.is_ascii_whitespace() || matches!(b, b'{' | b'}' | b'(' | b')' | b']') {
                    break;
                }
                if b == b'\\' && self.at + 1 < self.bytes.len() {
                    out.push(self.bytes[self.at + 1]);
                    self.at += 2;
                    continue;
                }
                out.push(b);
                self.at += 1;
            }
        }
        if out.is_empty() && self.at == start {
            return Err(Unreadable(start));
        }
        String::from_utf8(out).map_err(|_| Unreadable(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"{BOOLEXPR :boolop or :args ({OPEXPR :opno 2972 :opfuncid 2956 :opresulttype 16 :opretset false :opcollid 0 :inputcollid 0 :args ({VAR :varno 1 :varattno 1 :vartype 2950 :vartypmod -1 :varcollid 0 :varlevelsup 0 :varnosyn 1 :varattnosyn 1 :location 2983} {FUNCEXPR :funcid 136181 :funcresulttype 2950 :funcretset false :funcvariadic false :funcformat 0 :funccollid 0 :inputcollid 0 :args <> :location 2988}) :location 2986} {SUBLINK :subLinkType 2 :subLinkId 0 :testexpr {OPEXPR :opno 2972 :opfuncid 2956 :args ({VAR :varno 1 :varattno 1 :varlevelsup 0} {PARAM :paramkind 2 :paramid 1})} :operName ("=") :subselect {QUERY :commandType 1 :rtable ({RANGETBLENTRY :alias {ALIAS :aliasname m :colnames <>} :eref {ALIAS :aliasname m :colnames ("tenant_id" "user_id" "role")} :rtekind 0 :relid 136124 :relkind r :selectedCols (b 8 9) :securityQuals <>}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 1}) :quals <>} :targetList ({TARGETENTRY :expr {CONST :consttype 23 :constlen 4 :constbyval true :constisnull false :location 7 :constvalue 4 [ 1 0 0 0 0 0 0 0 ]} :resno 1 :resname my\ name :resjunk false})} :location 3028}) :location 3022}"#;

    #[test]
    fn a_policy_tree_reads_into_nodes_lists_and_tokens() {
        let Value::Node(root) = parse(POLICY).unwrap() else {
            panic!("not a node")
        };
        assert_eq!(root.name, "BOOLEXPR");
        assert_eq!(root.token("boolop"), Some("or"));
        let args = root.list("args");
        assert_eq!(args.len(), 2);
        let eq = args[0].as_node().unwrap();
        assert_eq!(eq.number("opno"), Some(2972));
        assert_eq!(
            eq.list("args")[0].as_node().unwrap().number("varattno"),
            Some(1)
        );
        let sublink = args[1].as_node().unwrap();
        assert_eq!(sublink.list("operName"), [Value::Token("=".into())]);
        let query = sublink.node("subselect").unwrap();
        let rte = query.list("rtable")[0].as_node().unwrap();
        assert_eq!(rte.number("relid"), Some(136124));
        assert_eq!(rte.get("securityQuals"), Some(&Value::Empty));
        let names: Vec<&str> = root.walk().iter().map(|n| n.name.as_str()).collect();
        assert!(names.contains(&"CONST") && names.contains(&"RANGETBLREF"));
        let target = query.list("targetList")[0].as_node().unwrap();
        assert_eq!(target.token("resname"), Some("my name"));
    }

    #[test]
    fn text_that_is_not_a_whole_tree_is_refused() {
        for bad in [
            "",
            "{OPEXPR :opno 1",
            "{OPEXPR :opno 1}}",
            "(a b",
            "{ }",
            "}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
