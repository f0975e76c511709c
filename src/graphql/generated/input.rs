//! Input types of the generated API: per table a `<T>Where` filter and a
//! `<T>OrderBy`, and per column type a `<Type>Comparison`. GraphQL validation
//! checks a query's literals and variables against these shapes (so filters
//! can be written inline); the value then arrives as JSON, the one filter
//! language [`crate::events::filter`] validates against the column types.

use crate::graphql::scalar::Scalar;
use std::sync::Arc;

use juniper::meta::{Argument, MetaType};
use juniper::{
    ArcStr, FieldError, FromInputValue, GraphQLEnum, GraphQLType, GraphQLValue, GraphQLValueAsync,
    InputValue, Registry,
};

use super::leaf::{base_type, value_type};
use crate::graphql::json::input_to_json;
use crate::graphql::model::{Base, TableInfo};

type S = Scalar;

/// Sort direction of an `orderBy` entry; nulls sort last ascending, first descending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum OrderDirection {
    /// Ascending, nulls last.
    Asc,
    /// Descending, nulls first.
    Desc,
}

/// Which generated input object.
#[derive(Clone, Debug)]
pub enum InputShape {
    /// `<T>Where`.
    Where(Arc<TableInfo>),
    /// `<T>OrderBy`.
    OrderBy(Arc<TableInfo>),
    /// `<Type>Comparison` (`<Type>ListComparison` for arrays).
    Comparison {
        /// Compared type.
        base: Base,
        /// Array column.
        list: bool,
    },
}

/// A generated input object, received as JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct Input(pub serde_json::Value);

impl GraphQLType<S> for Input {
    fn name(shape: &InputShape) -> Option<ArcStr> {
        Some(match shape {
            InputShape::Where(t) => t.names.filter.as_str().into(),
            InputShape::OrderBy(t) => t.names.order_by.as_str().into(),
            InputShape::Comparison { base, list } => base.comparison_name(*list).into(),
        })
    }

    fn meta(shape: &InputShape, registry: &mut Registry<S>) -> MetaType<S> {
        let (args, description) = match shape {
            InputShape::Where(table) => (
                where_fields(table, shape, registry),
                format!(
                    "Filter on {}: every field given must hold (AND); `_or`, `_and`, `_not` combine filters.",
                    table.table.qualified
                ),
            ),
            InputShape::OrderBy(table) => (
                table
                    .columns
                    .iter()
                    .filter(|c| c.orderable)
                    .map(|c| registry.arg::<Option<OrderDirection>>(c.field().to_owned(), &()))
                    .collect(),
                format!(
                    "One sort key of {}: give exactly one column per list entry.",
                    table.table.qualified
                ),
            ),
            InputShape::Comparison { base, list } => (
                comparison_fields(base, *list, registry),
                format!(
                    "Conditions on a {}{} value, ANDed; comparisons follow Postgres semantics.",
                    base.name(),
                    if *list { " list" } else { "" }
                ),
            ),
        };
        registry
            .build_input_object_type::<Self>(shape, &args)
            .description(description)
            .into_meta()
    }
}

fn where_fields(
    table: &TableInfo,
    shape: &InputShape,
    registry: &mut Registry<S>,
) -> Vec<Argument<S>> {
    let nested = Type::nullable(ArcStr::from(
        registry.get_type::<Input>(shape).innermost_name(),
    ));
    let mut args = vec![
        Argument::new("_and", nested.clone().wrap_non_null().wrap_list(None)),
        Argument::new("_or", nested.clone().wrap_non_null().wrap_list(None)),
        Argument::new("_not", nested),
    ];
    for column in &table.columns {
        let comparison = InputShape::Comparison {
            base: column.base.clone(),
            list: column.list,
        };
        let ty = Type::nullable(ArcStr::from(
            registry.get_type::<Input>(&comparison).innermost_name(),
        ));
        args.push(Argument::new(column.field().to_owned(), ty));
    }
    args
}

use juniper::Type;

fn comparison_fields(base: &Base, list: bool, registry: &mut Registry<S>) -> Vec<Argument<S>> {
    let boolean = base_type(registry, &Base::Boolean);
    let mut args = Vec::new();
    if list {
        let value = value_type(registry, base, true, false);
        args.push(Argument::new("eq", value.clone()));
        args.push(Argument::new("neq", value));
        args.push(Argument::new("isNull", boolean));
        return args;
    }
    let value = base_type(registry, base);
    let ordered = !matches!(base, Base::Json | Base::Boolean);
    args.push(Argument::new("eq", value.clone()));
    args.push(Argument::new("neq", value.clone()));
    if ordered {
        for op in ["lt", "lte", "gt", "gte"] {
            args.push(Argument::new(op, value.clone()));
        }
    }
    args.push(Argument::new(
        "in",
        value.clone().wrap_non_null().wrap_list(None),
    ));
    args.push(Argument::new("isNull", boolean));
    if *base == Base::String {
        args.push(Argument::new("like", value.clone()));
        args.push(Argument::new("ilike", value));
    }
    args
}

impl GraphQLValue<S> for Input {
    type Context = ();
    type TypeInfo = InputShape;

    named_by_type_info!();
}

impl GraphQLValueAsync<S> for Input {}

impl FromInputValue<S> for Input {
    type Error = FieldError<S>;

    fn from_input_value(v: &InputValue<S>) -> Result<Self, Self::Error> {
        input_to_json(v).map(Input)
    }
}
