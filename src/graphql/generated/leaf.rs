//! Leaf types of the generated API: the custom scalars (`BigInt`, `BigFloat`,
//! `UUID`, `Timestamp`, `Date`), one GraphQL enum per Postgres enum, and the
//! mapping of a column to its GraphQL type. Values are never built through
//! these types: rows resolve straight from their JSON images (see
//! [`super::object`]); these only describe the schema and accept input.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use juniper::meta::{EnumValue, MetaType};
use juniper::{
    ArcStr, ExecutionResult, Executor, FieldError, FromInputValue, GraphQLType, GraphQLValue,
    GraphQLValueAsync, InputValue, ParseScalarResult, ParseScalarValue, Registry, ScalarToken,
    ScalarValue, Selection, Type, Value,
};

use crate::graphql::json::Json;
use crate::graphql::model::{Base, EnumInfo, ScalarKind};

type S = Scalar;

/// A custom scalar; which one is its type info.
pub struct CustomScalar;

impl GraphQLType<S> for CustomScalar {
    fn name(kind: &ScalarKind) -> Option<ArcStr> {
        Some(kind.name().into())
    }

    fn meta(kind: &ScalarKind, registry: &mut Registry<S>) -> MetaType<S> {
        registry
            .build_scalar_type::<Self>(kind)
            .description(kind.description())
            .into_meta()
    }
}

impl GraphQLValue<S> for CustomScalar {
    type Context = ();
    type TypeInfo = ScalarKind;

    named_by_type_info!();

    fn resolve(
        &self,
        _: &ScalarKind,
        _: Option<&[Selection<S>]>,
        _: &Executor<(), S>,
    ) -> ExecutionResult<S> {
        Ok(Value::null())
    }
}

impl GraphQLValueAsync<S> for CustomScalar {}

impl FromInputValue<S> for CustomScalar {
    type Error = FieldError<S>;

    /// Any string or number: the filter checks it against the column's type,
    /// which this type cannot see.
    fn from_input_value(v: &InputValue<S>) -> Result<Self, Self::Error> {
        match v {
            InputValue::Scalar(Scalar::Boolean(_)) => {
                Err(FieldError::from("expected a string or a number"))
            }
            InputValue::Scalar(_) => Ok(CustomScalar),
            _ => Err(FieldError::from("expected a string or a number")),
        }
    }
}

impl ParseScalarValue<S> for CustomScalar {
    /// Numbers are kept as their digits (a string), so a `BigInt` or
    /// `BigFloat` literal never passes through a float.
    fn from_str(token: ScalarToken<'_>) -> ParseScalarResult<S> {
        Ok(match token {
            ScalarToken::String(s) => {
                <String as ParseScalarValue<S>>::from_str(ScalarToken::String(s))?
            }
            ScalarToken::Int(digits) | ScalarToken::Float(digits) => {
                Scalar::String(digits.to_owned())
            }
        })
    }
}

/// A generated enum; its labels are its type info.
pub struct Enum;

impl GraphQLType<S> for Enum {
    fn name(info: &Arc<EnumInfo>) -> Option<ArcStr> {
        Some(info.name.as_str().into())
    }

    fn meta(info: &Arc<EnumInfo>, registry: &mut Registry<S>) -> MetaType<S> {
        let values: Vec<EnumValue> = info
            .labels
            .iter()
            .map(|l| EnumValue::new(l.as_str()))
            .collect();
        registry
            .build_enum_type::<Self>(info, &values)
            .description(format!("The Postgres enum {}.", info.sql_name))
            .into_meta()
    }
}

impl GraphQLValue<S> for Enum {
    type Context = ();
    type TypeInfo = Arc<EnumInfo>;

    named_by_type_info!();
}

impl GraphQLValueAsync<S> for Enum {}

impl FromInputValue<S> for Enum {
    type Error = FieldError<S>;

    fn from_input_value(v: &InputValue<S>) -> Result<Self, Self::Error> {
        match v {
            InputValue::Enum(_) => Ok(Enum),
            InputValue::Scalar(s) if s.try_as_str().is_some() => Ok(Enum),
            _ => Err(FieldError::from("expected an enum value")),
        }
    }
}

/// Registers `base` and returns it as a nullable type.
pub fn base_type(registry: &mut Registry<S>, base: &Base) -> Type {
    let named = match base {
        Base::Int => registry.get_type::<i32>(&()),
        Base::Float => registry.get_type::<f64>(&()),
        Base::String => registry.get_type::<String>(&()),
        Base::Boolean => registry.get_type::<bool>(&()),
        Base::DateTime => registry.get_type::<chrono::DateTime<chrono::Utc>>(&()),
        Base::Json => registry.get_type::<Json>(&()),
        Base::Scalar(kind) => registry.get_type::<CustomScalar>(kind),
        Base::Enum(info) => registry.get_type::<Enum>(info),
    };
    Type::nullable(ArcStr::from(named.innermost_name()))
}

/// The GraphQL type of a value of `base`: a list of nullable elements for
/// arrays, non-null when `non_null`.
pub fn value_type(registry: &mut Registry<S>, base: &Base, list: bool, non_null: bool) -> Type {
    let mut ty = base_type(registry, base);
    if list {
        ty = ty.wrap_list(None);
    }
    if non_null {
        ty = ty.wrap_non_null();
    }
    ty
}
