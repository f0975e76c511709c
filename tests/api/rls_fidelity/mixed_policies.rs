//! Property 2: a custom table with mixed policies: two permissive SELECT
//! policies, a restrictive one, an UPDATE-only policy and policies for
//! another role, none of the last two counting for `app_user`'s SELECT; and
//! the same rows in a table whose permissive policies a route can narrow by
//! owner but, with the restrictive one, not decide.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::comparison::compare_table;
use super::{Context, Harness, Stats, Table, check_property, context};

const ITEMS: Table = Table {
    name: "public.items",
    pk: &[("id", "int4")],
};
const OWNED_ITEMS: Table = Table {
    name: "public.owned_items",
    pk: &[("id", "int4")],
};

/// The custom table of the second property, its policies and its tracking.
const ITEMS_SETUP: &str = "
    do $$
    begin
      create role some_other_role nologin;
    exception when duplicate_object or unique_violation then
      null; -- cluster-wide; another test (process) made it first
    end
    $$;
    create table public.items (id serial primary key, owner text, level int, tenant text);
    alter table public.items enable row level security;
    create policy items_owner on public.items for select
      using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');
    create policy items_level_zero on public.items for select
      using (level = 0);
    create policy items_not_blocked on public.items as restrictive for select
      using (tenant <> 'blocked');
    create policy items_update_anything on public.items for update
      using (true);
    create policy items_other_role_sees_all on public.items for select to some_other_role
      using (true);
    create policy items_other_role_sees_nothing on public.items as restrictive for all
      to some_other_role using (false);
    grant select on public.items to app_user;
    select herald.track('public.items');
    -- The same rows under policies a route can narrow but not decide: two
    -- permissive ones on the owner, and the restrictive one.
    create table public.owned_items (id int primary key, owner text, tenant text);
    alter table public.owned_items enable row level security;
    create policy owned_items_owner on public.owned_items for select
      using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');
    create policy owned_items_bob_shares on public.owned_items for select
      using ('bob' = owner);
    create policy owned_items_not_blocked on public.owned_items as restrictive for select
      using (tenant <> 'blocked');
    grant select on public.owned_items to app_user;
    select herald.track('public.owned_items');";

/// Owners of items, and the `sub`s callers of the second property pick from.
const OWNERS: [&str; 5] = ["alice", "bob", "carol", "7", ""];
/// Tenants of items (`blocked` is hidden by the restrictive policy).
const ITEM_TENANTS: [&str; 3] = ["a", "b", "blocked"];

#[derive(Clone, Debug)]
enum Sub {
    /// `{"sub": OWNERS[i]}`.
    Text(usize),
    /// `{"sub": 7}`: a JSON number, which `->> 'sub'` reads as "7".
    Number,
    /// No `sub` claim.
    Missing,
}

#[derive(Clone, Debug)]
struct Items {
    /// (owner index into OWNERS, level, tenant index into ITEM_TENANTS).
    rows: Vec<(Option<usize>, Option<i32>, Option<usize>)>,
    subs: Vec<Sub>,
    shuffle: u64,
}

fn items_strategy() -> impl Strategy<Value = Items> {
    // Nulls are rarer than values, so that rows are visible often enough.
    let row = (
        option::weighted(0.85, 0..OWNERS.len()),
        option::weighted(0.85, 0..3i32),
        option::weighted(0.85, 0..ITEM_TENANTS.len()),
    );
    let sub = prop_oneof![
        4 => (0..OWNERS.len()).prop_map(Sub::Text),
        1 => Just(Sub::Number),
        1 => Just(Sub::Missing),
    ];
    (vec(row, 0..=16), vec(sub, 1..=5), any::<u64>()).prop_map(|(rows, subs, shuffle)| Items {
        rows,
        subs,
        shuffle,
    })
}

async fn items_case(h: &Harness, s: &Items, stats: &Cell<Stats>) -> Result<(), TestCaseError> {
    let app = &h.app;
    app.sql("truncate public.items, public.owned_items restart identity")
        .await;
    let mut note = String::from("items:");
    for (owner, level, tenant) in &s.rows {
        let owner = owner.map(|o| OWNERS[o]);
        let tenant = tenant.map(|t| ITEM_TENANTS[t]);
        app.admin
            .execute(
                "insert into public.items (owner, level, tenant) values ($1, $2, $3)",
                &[&owner, level, &tenant],
            )
            .await
            .unwrap();
        app.admin
            .execute(
                "insert into public.owned_items (id, owner, tenant)
                 select coalesce(max(id), 0) + 1, $1, $2 from public.owned_items",
                &[&owner, &tenant],
            )
            .await
            .unwrap();
        note.push_str(&format!(
            "\n  owner {owner:?}, level {level:?}, tenant {tenant:?}"
        ));
    }
    let contexts: Vec<Context> = s
        .subs
        .iter()
        .map(|sub| match sub {
            Sub::Text(i) => context(
                format!("sub {:?}", OWNERS[*i]),
                Some(json!(OWNERS[*i])),
                false,
            ),
            Sub::Number => context("sub 7 (number)", Some(json!(7)), false),
            Sub::Missing => context("no sub", None, false),
        })
        .collect();
    compare_table(h, &ITEMS, &contexts, s.shuffle, &[], stats, &note).await?;
    compare_table(h, &OWNED_ITEMS, &contexts, s.shuffle, &[], stats, &note).await
}

#[test]
fn authorizer_agrees_with_live_rls_on_mixed_policies() {
    let stats = check_property(32, Some(ITEMS_SETUP), items_strategy(), items_case);
    assert!(
        stats.visible > 0 && stats.hidden > 0,
        "vacuous run: {stats:?}"
    );
    assert!(
        stats.routed_away > 0,
        "no cell was narrowed away by a policy route: {stats:?}"
    );
}
