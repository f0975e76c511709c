//! The juniper types behind the part of the schema generated from the
//! catalog: one Rust type per kind of GraphQL type, told apart by its type
//! info (see [`super::model`]).

/// `type_name` and `concrete_type_name` (asked for `__typename`) of a type
/// whose GraphQL name comes from its type info, for use inside its
/// `GraphQLValue` impl.
macro_rules! named_by_type_info {
    () => {
        fn type_name(&self, info: &Self::TypeInfo) -> Option<juniper::ArcStr> {
            <Self as juniper::GraphQLType<S>>::name(info)
        }

        fn concrete_type_name(&self, _: &Self::Context, info: &Self::TypeInfo) -> String {
            <Self as juniper::GraphQLType<S>>::name(info)
                .map(|n| n.to_string())
                .unwrap_or_default()
        }
    };
}
pub(crate) use named_by_type_info;

pub mod input;
pub mod leaf;
pub mod object;
