//! Per-connection GraphQL context: the shared application state and the caller.

use std::sync::Arc;

use crate::app::AppState;
use crate::auth::Caller;

/// What every resolver sees.
#[derive(Clone)]
pub struct Context {
    /// Pool, hub, configuration.
    pub app: Arc<AppState>,
    /// Whose RLS view applies.
    pub caller: Arc<Caller>,
}

impl juniper::Context for Context {}
