//! The renderings of one event: the JSON each distinct (selection, visible
//! row images) of its subscribers was rendered to, so that subscribers who
//! want the same thing of the same event share one rendering. Every delivery
//! of an event in one page (or one catch-up) holds the same [`Renderings`].
//!
//! What renders is not known here (the GraphQL layer does): a selection is an
//! opaque canonical text, and a rendering is JSON text. Two deliveries of the
//! event render alike when their selections have the same text and their
//! images the same content, which is all the key compares: a hash is only a
//! quick way to tell keys apart, never taken as equality.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use serde_json::value::RawValue;

/// Renderings kept per event; past this, further ones are rendered and not
/// kept (an event wanted in many shapes costs what it did before sharing).
pub const MAX_RENDERINGS: usize = 32;

/// What a subscription's selection renders, as canonical text, and its hash.
#[derive(Clone, Debug)]
pub struct SelectionKey {
    hash: u64,
    text: Arc<str>,
}

impl SelectionKey {
    /// The key of the canonical selection `text`.
    pub fn new(text: &str) -> SelectionKey {
        // SipHash with fixed keys: the hash only narrows the search, so a
        // client able to make two texts collide gains nothing.
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        SelectionKey {
            hash: hasher.finish(),
            text: text.into(),
        }
    }

    /// The canonical text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn same(&self, other: &SelectionKey) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

/// A row image as a delivery carries it: absent, or shared JSON.
type Image = Option<Arc<Value>>;

/// Whether two images have the same content: the same allocation (an event's
/// own image, when every column is visible) or equal JSON (images cut to the
/// same columns for different security contexts). The entry holds its images,
/// so an address it compares with cannot have been freed and reused.
fn same_image(a: &Image, b: &Image) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

struct Entry {
    selection: SelectionKey,
    row: Image,
    old: Image,
    json: Arc<RawValue>,
}

impl Entry {
    fn matches(&self, selection: &SelectionKey, row: &Image, old: &Image) -> bool {
        self.selection.same(selection) && same_image(&self.row, row) && same_image(&self.old, old)
    }
}

/// The renderings of one event, shared by its deliveries; at most
/// [`MAX_RENDERINGS`].
#[derive(Default)]
pub struct Renderings {
    // Held only to scan or push: never across a rendering or an await.
    entries: Mutex<Vec<Entry>>,
}

impl fmt::Debug for Renderings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderings")
            .field("kept", &self.lock().len())
            .finish()
    }
}

impl Renderings {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // Entries are only ever pushed whole: a poisoned list is still sound.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rendering of `selection` for the images `row` and `old`, if one was kept.
    pub fn find(
        &self,
        selection: &SelectionKey,
        row: &Image,
        old: &Image,
    ) -> Option<Arc<RawValue>> {
        self.lock()
            .iter()
            .find(|e| e.matches(selection, row, old))
            .map(|e| e.json.clone())
    }

    /// Keeps `json` as the rendering of `selection` for `row` and `old`
    /// (unless [`MAX_RENDERINGS`] are kept already) and returns the rendering
    /// to send: one kept meanwhile by a concurrent rendering of the same key
    /// (identical, so that every subscriber gets the same bytes), else `json`.
    pub fn keep(
        &self,
        selection: &SelectionKey,
        row: &Image,
        old: &Image,
        json: Arc<RawValue>,
    ) -> Arc<RawValue> {
        let mut entries = self.lock();
        if let Some(kept) = entries.iter().find(|e| e.matches(selection, row, old)) {
            return kept.json.clone();
        }
        if entries.len() < MAX_RENDERINGS {
            entries.push(Entry {
                selection: selection.clone(),
                row: row.clone(),
                old: old.clone(),
                json: json.clone(),
            });
        }
        json
    }
}

/// How many items were rendered, and how many were sent from a rendering
/// made for another subscriber; for `/metrics`.
#[derive(Debug, Default)]
pub struct RenderingStats {
    /// Items rendered (every subscription item executed).
    pub rendered: AtomicU64,
    /// Items sent from a kept rendering, without executing their selection.
    pub shared: AtomicU64,
}

impl RenderingStats {
    /// The counters, as (exported name, help, value) for `/metrics`.
    pub fn counters(&self) -> [crate::metrics::CounterSpec<'_>; 2] {
        [
            (
                "pgherald_renderings_total",
                "Subscription items rendered (their selection executed and encoded).",
                &self.rendered,
            ),
            (
                "pgherald_renderings_shared_total",
                "Subscription items sent from a rendering made for another subscriber of the same event.",
                &self.shared,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use serde_json::json;

    use super::*;

    fn raw(text: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(text.to_owned()).unwrap())
    }

    fn image(v: Value) -> Image {
        Some(Arc::new(v))
    }

    #[test]
    fn a_kept_rendering_is_found_by_the_same_selection_text_and_images() {
        let r = Renderings::default();
        let row = image(json!({"id": 1, "title": "a"}));
        let selection = SelectionKey::new("op row");
        assert!(r.find(&selection, &row, &None).is_none());
        let sent = r.keep(&selection, &row, &None, raw("1"));
        assert_eq!(sent.get(), "1");
        // Another subscription's key: its own Arc, the same text.
        let found = r.find(&SelectionKey::new("op row"), &row, &None).unwrap();
        assert_eq!(found.get(), "1");
        assert!(r.find(&SelectionKey::new("op"), &row, &None).is_none());
        assert!(r.find(&selection, &None, &None).is_none());
        assert!(r.find(&selection, &row, &row).is_none());
    }

    #[test]
    fn images_match_by_pointer_or_by_content_and_never_otherwise() {
        let r = Renderings::default();
        let selection = SelectionKey::new("row");
        let cut = image(json!({"id": 1}));
        r.keep(&selection, &cut, &None, raw(r#"{"id":1}"#));
        // The same columns cut for another context: a fresh Arc, same content.
        let again = image(json!({"id": 1}));
        assert!(!Arc::ptr_eq(cut.as_ref().unwrap(), again.as_ref().unwrap()));
        assert_eq!(
            r.find(&selection, &again, &None).unwrap().get(),
            r#"{"id":1}"#
        );
        // More columns: another rendering.
        let wide = image(json!({"id": 1, "secret": "s"}));
        assert!(r.find(&selection, &wide, &None).is_none());
        // Old and new are not interchangeable.
        assert!(r.find(&selection, &None, &cut).is_none());
    }

    #[test]
    fn a_hash_collision_with_another_text_is_not_a_hit() {
        let r = Renderings::default();
        let row = image(json!({"id": 1}));
        let mine = SelectionKey::new("row { id }");
        let forged = SelectionKey {
            hash: mine.hash,
            text: "row { secret }".into(),
        };
        r.keep(&mine, &row, &None, raw("1"));
        assert!(r.find(&forged, &row, &None).is_none());
        r.keep(&forged, &row, &None, raw("2"));
        assert_eq!(r.find(&forged, &row, &None).unwrap().get(), "2");
        assert_eq!(r.find(&mine, &row, &None).unwrap().get(), "1");
    }

    #[test]
    fn at_most_the_bound_is_kept_and_a_rendering_past_it_is_still_sent() {
        let r = Renderings::default();
        for n in 0..MAX_RENDERINGS + 3 {
            let key = SelectionKey::new(&format!("field{n}"));
            let sent = r.keep(&key, &None, &None, raw(&n.to_string()));
            assert_eq!(sent.get(), n.to_string());
        }
        assert_eq!(r.lock().len(), MAX_RENDERINGS);
        let last = SelectionKey::new(&format!("field{}", MAX_RENDERINGS - 1));
        assert!(r.find(&last, &None, &None).is_some());
        let past = SelectionKey::new(&format!("field{MAX_RENDERINGS}"));
        assert!(r.find(&past, &None, &None).is_none());
    }

    #[test]
    fn of_two_concurrent_renderings_of_one_key_the_kept_one_is_sent_by_both() {
        let r = Renderings::default();
        let selection = SelectionKey::new("op");
        let first = r.keep(&selection, &None, &None, raw("\"INSERT\""));
        let second = r.keep(&selection, &None, &None, raw("\"INSERT\""));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(r.lock().len(), 1);
    }

    #[test]
    fn the_counters_are_named_counters_with_help() {
        let stats = RenderingStats::default();
        stats.rendered.fetch_add(2, Ordering::Relaxed);
        stats.shared.fetch_add(5, Ordering::Relaxed);
        let counters = stats.counters();
        let values: Vec<(&str, u64)> = counters
            .iter()
            .map(|(name, _, v)| (*name, v.load(Ordering::Relaxed)))
            .collect();
        assert_eq!(
            values,
            [
                ("pgherald_renderings_total", 2),
                ("pgherald_renderings_shared_total", 5)
            ]
        );
        assert!(counters.iter().all(|(_, help, _)| help.ends_with('.')));
    }
}
