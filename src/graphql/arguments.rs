//! Reading field arguments: an absent argument and an explicit `null` are the
//! same, and a value that does not convert is the client's error.

use juniper::{Arguments, FieldError, FromInputValue, IntoFieldError};

use super::scalar::Scalar;
use crate::error::{ApiError, ApiResult};

/// Argument `name`, `None` when absent or null.
pub fn optional<T>(args: &Arguments<'_, Scalar>, name: &str) -> ApiResult<Option<T>>
where
    T: FromInputValue<Scalar>,
    T::Error: IntoFieldError<Scalar>,
{
    args.get::<Option<T>>(name)
        .map(Option::flatten)
        .map_err(|e: FieldError<Scalar>| ApiError::BadInput(format!("{name}: {}", e.message())))
}

/// Argument `name`, which must be given.
pub fn required<T>(args: &Arguments<'_, Scalar>, name: &str) -> ApiResult<T>
where
    T: FromInputValue<Scalar>,
    T::Error: IntoFieldError<Scalar>,
{
    optional(args, name)?.ok_or_else(|| ApiError::BadInput(format!("{name} is required")))
}
