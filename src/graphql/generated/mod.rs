//! The juniper types behind the part of the schema generated from the
//! catalog: one Rust type per kind of GraphQL type, told apart by its type
//! info (see [`super::model`]).

pub mod input;
pub mod leaf;
pub mod object;
