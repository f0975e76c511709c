//! Rendering subscription items once: an item of an event is executed
//! against a subscription's selection and encoded as JSON once per
//! (selection, visible row images) among the subscribers it was delivered to
//! in one page; the others are sent the same bytes (the memo is
//! [`crate::events::renderings`]). Rows of an `initial` read (no delivery)
//! and renderings with errors are rendered for their subscriber alone, as
//! before.
//!
//! What an item renders to depends on nothing else: `Change` and `RowChange`
//! resolve with the context `()`, from the delivery's event, images and
//! bounds and this instance's cursor codec, under the subscription's schema
//! (its generation is in the key) and item type (in the key too).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use juniper::{
    ExecutionError, Executor, GraphQLValueAsync, LookAheadChildren, LookAheadValue, Value,
};

use super::context::Context;
use super::generated::object::{ChangeCursor, RowChange};
use super::scalar::{Encoded, Scalar};
use super::types::Change;
use crate::events::delivery::Delivery;
use crate::events::renderings::{RenderingStats, SelectionKey};

type S = Scalar;

/// A subscription item that may come from a delivery.
pub(super) trait Item {
    /// The delivery it renders, if any.
    fn delivery(&self) -> Option<&Delivery>;
}

impl Item for Change {
    fn delivery(&self) -> Option<&Delivery> {
        Some(&self.delivery)
    }
}

impl Item for RowChange {
    fn delivery(&self) -> Option<&Delivery> {
        match &self.cursor {
            // `row` and `old` are the delivery's own images.
            ChangeCursor::After(delivery, _) => Some(delivery),
            ChangeCursor::At(..) => None,
        }
    }
}

/// How one subscription renders its items: its selection's key, computed
/// once when it starts.
pub(super) struct Renderer {
    selection: SelectionKey,
    stats: Arc<RenderingStats>,
}

impl Renderer {
    /// The renderer of the subscription field `executor` resolves, whose
    /// items are of GraphQL type `item_type` in schema generation
    /// `generation`.
    ///
    /// The look-ahead is the field being executed: a subscription has
    /// exactly one root field (enforced before juniper sees the request, see
    /// [`super::limits`]), so no other field of the same name can be taken
    /// for it.
    pub(super) fn new(
        executor: &Executor<'_, '_, Context, S>,
        item_type: &str,
        generation: u64,
    ) -> Renderer {
        let mut text = format!("{generation} {item_type} ");
        canonical(&executor.look_ahead().children(), &mut text);
        Renderer {
            selection: SelectionKey::new(&text),
            stats: executor.context().feed.rendering_stats().clone(),
        }
    }

    /// `item` resolved by `executor`: the rendering another subscriber's
    /// identical selection made of the same images, else a new one (kept for
    /// the others when it has no errors).
    pub(super) async fn render<T>(
        &self,
        executor: &Executor<'_, '_, Context, S>,
        info: &T::TypeInfo,
        item: &T,
    ) -> Result<Value<S>, Vec<ExecutionError<S>>>
    where
        T: GraphQLValueAsync<S, Context = ()> + Item + Sync,
        T::TypeInfo: Sync,
    {
        let delivery = item.delivery();
        if let Some(d) = delivery {
            if let Some(json) = d.renderings.find(&self.selection, &d.row, &d.old) {
                self.stats.shared.fetch_add(1, Ordering::Relaxed);
                return Ok(Value::scalar(Scalar::Encoded(Encoded(json))));
            }
        }
        self.stats.rendered.fetch_add(1, Ordering::Relaxed);
        let resolved = executor
            .resolve_with_ctx_async(info, item)
            .await
            .map_err(|e| vec![executor.new_error(e)])?;
        let errors = executor.take_errors();
        if !errors.is_empty() {
            return Err(errors);
        }
        let Some(d) = delivery else {
            return Ok(resolved);
        };
        match serde_json::value::to_raw_value(&resolved) {
            Ok(json) => {
                let json = d
                    .renderings
                    .keep(&self.selection, &d.row, &d.old, Arc::from(json));
                Ok(Value::scalar(Scalar::Encoded(Encoded(json))))
            }
            // Not expected (it is what the frame would have serialised):
            // send it unshared and let the frame report it.
            Err(_) => Ok(resolved),
        }
    }
}

/// Appends the canonical text of the selection `children`: each field in
/// document order (fragments expanded, `@skip` and `@include` applied with
/// the subscriber's variables) as its response name, field name, type
/// condition, arguments (variables resolved) and own children. Names are
/// GraphQL names and values are written as JSON, so the punctuation between
/// them cannot be forged: selections that render differently have different
/// texts. Variables used only elsewhere (the root field's filter) are not
/// in it.
pub(super) fn canonical(children: &LookAheadChildren<'_, S>, out: &mut String) {
    for child in children.iter() {
        out.push_str(child.field_name());
        out.push(':');
        out.push_str(child.field_original_name());
        if let Some(on) = child.applies_for() {
            let _ = write!(out, " on {on}");
        }
        let mut arguments = child.arguments().peekable();
        if arguments.peek().is_some() {
            out.push('(');
            for argument in arguments {
                out.push_str(argument.name());
                out.push('=');
                value(argument.value(), out);
                out.push(',');
            }
            out.push(')');
        }
        let grandchildren = child.children();
        if !grandchildren.is_empty() {
            out.push('{');
            canonical(&grandchildren, out);
            out.push('}');
        }
        out.push(';');
    }
}

fn value(v: LookAheadValue<'_, S>, out: &mut String) {
    match v {
        LookAheadValue::Null => out.push_str("null"),
        LookAheadValue::Scalar(s) => match serde_json::to_string(s) {
            Ok(json) => out.push_str(&json),
            // No scalar of a request fails to serialise; mark it apart anyway.
            Err(_) => {
                let _ = write!(out, "?{s:?}");
            }
        },
        LookAheadValue::Enum(e) => out.push_str(e),
        LookAheadValue::List(items) => {
            out.push('[');
            for item in items.iter() {
                value(item.item, out);
                out.push(',');
            }
            out.push(']');
        }
        LookAheadValue::Object(fields) => {
            out.push('{');
            for (name, item) in fields.iter() {
                out.push_str(name.item);
                out.push('=');
                value(item.item, out);
                out.push(',');
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
#[path = "rendering_tests.rs"]
mod tests;
