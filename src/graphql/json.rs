//! The `JSON` scalar: arbitrary JSON out (row images as objects), and in
//! (filters). Juniper's scalars can only produce leaf values, so this one is
//! implemented by hand to resolve to a whole object.
//!
//! On input, GraphQL validation only lets strings reach a scalar, so objects
//! given as variables are turned into JSON text first (see [`super::request`]),
//! and a string holding JSON is accepted here.

use std::sync::Arc;

use juniper::macros::reflect;

use super::scalar::{ExactNumber, Scalar};
use crate::db::jsonb::exact_number;
use juniper::{
    ArcStr, ExecutionResult, Executor, FieldError, FromInputValue, GraphQLType, GraphQLValue,
    GraphQLValueAsync, InputValue, ParseScalarResult, ParseScalarValue, Registry, ScalarToken,
    Selection, ToInputValue, Value, marker::IsInputType, marker::IsOutputType, meta::MetaType,
};

/// Any JSON value.
#[derive(Clone, Debug, PartialEq)]
pub struct Json(pub Arc<serde_json::Value>);

impl GraphQLType<Scalar> for Json {
    fn name(_: &()) -> Option<ArcStr> {
        Some(juniper::arcstr::literal!("JSON"))
    }

    fn meta(info: &(), registry: &mut Registry<Scalar>) -> MetaType<Scalar> {
        registry
            .build_scalar_type::<Self>(info)
            .description("Any JSON value. As an argument: a JSON object in a variable, or a string holding JSON.")
            .into_meta()
    }
}

impl GraphQLValue<Scalar> for Json {
    type Context = ();
    type TypeInfo = ();

    fn type_name(&self, info: &()) -> Option<ArcStr> {
        <Self as GraphQLType<Scalar>>::name(info)
    }

    fn resolve(
        &self,
        _: &(),
        _: Option<&[Selection<Scalar>]>,
        _: &Executor<Self::Context, Scalar>,
    ) -> ExecutionResult<Scalar> {
        Ok(to_graphql(&self.0))
    }
}

impl GraphQLValueAsync<Scalar> for Json {
    fn resolve_async<'a>(
        &'a self,
        info: &'a (),
        selection_set: Option<&'a [Selection<Scalar>]>,
        executor: &'a Executor<Self::Context, Scalar>,
    ) -> juniper::BoxFuture<'a, ExecutionResult<Scalar>> {
        Box::pin(std::future::ready(self.resolve(
            info,
            selection_set,
            executor,
        )))
    }
}

impl FromInputValue<Scalar> for Json {
    type Error = FieldError<Scalar>;

    fn from_input_value(v: &InputValue<Scalar>) -> Result<Self, Self::Error> {
        let json = input_to_json(v)?;
        // A string is JSON text (how objects reach a scalar through validation).
        let json = match json {
            serde_json::Value::String(text) => serde_json::from_str(&text)
                .map_err(|e| FieldError::from(format!("JSON argument is not valid JSON: {e}")))?,
            other => other,
        };
        Ok(Json(Arc::new(json)))
    }
}

impl ParseScalarValue<Scalar> for Json {
    fn from_str(value: ScalarToken<'_>) -> ParseScalarResult<Scalar> {
        <String as ParseScalarValue<Scalar>>::from_str(value)
    }
}

impl ToInputValue<Scalar> for Json {
    fn to_input_value(&self) -> InputValue<Scalar> {
        InputValue::scalar(self.0.to_string())
    }
}

impl IsInputType<Scalar> for Json {}
impl IsOutputType<Scalar> for Json {}

impl<S> reflect::BaseType<S> for Json {
    const NAME: reflect::Type = "JSON";
}

impl<S> reflect::BaseSubTypes<S> for Json {
    const NAMES: reflect::Types = &["JSON"];
}

impl<S> reflect::WrappedType<S> for Json {
    const VALUE: reflect::WrappedValue = 1;
}

/// A JSON value as a GraphQL output value; integers stay integers (exact
/// up to 64 bits), other numbers are floats.
pub fn to_graphql(json: &serde_json::Value) -> Value<Scalar> {
    use serde_json::Value as J;
    match json {
        J::Null => Value::null(),
        J::Bool(b) => Value::scalar(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Scalar(i32::try_from(i).map_or(Scalar::Long(i), Scalar::Int)),
            None => Value::scalar(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => match exact_number(s) {
            Some(number) => Value::Scalar(Scalar::Exact(ExactNumber(number.to_owned()))),
            None => Value::scalar(s.clone()),
        },
        J::Array(items) => Value::list(items.iter().map(to_graphql).collect()),
        J::Object(fields) => Value::object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_graphql(v)))
                .collect(),
        ),
    }
}

/// A GraphQL input value as JSON (enum values become strings).
pub fn input_to_json(v: &InputValue<Scalar>) -> Result<serde_json::Value, FieldError<Scalar>> {
    use serde_json::Value as J;
    Ok(match v {
        InputValue::Null => J::Null,
        InputValue::Scalar(s) => match s {
            Scalar::Boolean(b) => J::Bool(*b),
            Scalar::Int(i) => J::from(*i),
            Scalar::Long(i) => J::from(*i),
            Scalar::Float(f) => J::from(*f),
            Scalar::String(text) => J::String(text.clone()),
            // Only produced for output; as input, keep the digits as text.
            Scalar::Exact(n) => J::String(n.0.clone()),
            // Output only: never parsed from a request.
            Scalar::Encoded(_) => {
                return Err(FieldError::from("an encoded value is not an input"));
            }
        },
        InputValue::Enum(e) => J::String(e.clone()),
        InputValue::Variable(name) => {
            return Err(FieldError::from(format!("unresolved variable ${name}")));
        }
        InputValue::List(items) => J::Array(
            items
                .iter()
                .map(|i| input_to_json(&i.item))
                .collect::<Result<_, _>>()?,
        ),
        InputValue::Object(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.item.clone(), input_to_json(&v.item)?)))
                .collect::<Result<_, FieldError<Scalar>>>()?,
        ),
    })
}
