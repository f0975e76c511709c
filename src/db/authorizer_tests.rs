//! Unit tests of [`super`].

use serde_json::json;

use super::*;

#[test]
fn only_a_cancelled_policy_query_is_blamed_on_its_context_at_once() {
    let blame_of = blame_sqlstate;
    assert_eq!(blame_of(Some("57014")), Blame::Context);
    assert_eq!(blame_of(Some("57P01")), Blame::Connection);
    assert_eq!(blame_of(Some("08006")), Blame::Connection);
    assert_eq!(blame_of(None), Blame::Connection);
    assert_eq!(blame_of(Some("53200")), Blame::Other);
    assert_eq!(
        blame(&DbError::Data("x".into())),
        Blame::Connection,
        "no SQLSTATE: not the server's verdict on a context"
    );
}

#[test]
fn a_failed_context_sees_nothing_and_keeps_no_columns() {
    let image = Arc::new(json!({"id": 1}));
    let checks: Vec<Check> = (0..2)
        .map(|context| Check {
            context,
            relid: 7,
            image: image.clone(),
            moment: Moment::Now,
        })
        .collect();
    let columns: HashMap<(usize, u32), Arc<[String]>> = (0..2)
        .map(|c| ((c, 7), Arc::from(vec!["id".to_owned()])))
        .collect();
    let mut v =
        Verdicts::from_parts(vec![true, true], columns).with_failure(1, ContextFailure::Role);
    v.settle(&checks);
    assert!(v.visible(0));
    assert!(!v.visible(1));
    assert_eq!(v.failure(1), Some(ContextFailure::Role));
    assert_eq!(v.restrict(1, 7, &image), Arc::new(json!({})));
    assert_eq!(v.restrict(0, 7, &image), image);
}
