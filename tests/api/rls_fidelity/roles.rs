//! Property 3: roles and table settings. Callers assume roles that inherit
//! `app_user`, a NOINHERIT member of it, a role owning tables (with and
//! without FORCE ROW LEVEL SECURITY), a NOINHERIT member of that owner (not
//! an owner: policies bind it) and a role of their own, against tables
//! with RLS off, RLS on without any policy, only a restrictive policy,
//! policies for particular roles, and owned tables; every table of a case
//! is checked, row by row and column by column, against live RLS.

use std::cell::Cell;

use pgherald::auth::Caller;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::comparison::compare_table;
use super::{Context, Harness, Stats, Table, check_property};

/// The roles, created once per cluster (they outlive the test database) and
/// granted to the login role so that tokens may name them.
const ROLES: [&str; 6] = [
    "app_user",
    "rlsprop_member",
    "rlsprop_noinherit",
    "rlsprop_owner",
    "rlsprop_owner_noinherit",
    "rlsprop_plain",
];

const SETUP: &str = "
    do $$
    begin
      begin create role rlsprop_member nologin in role app_user;
      exception when duplicate_object or unique_violation then null; end;
      begin create role rlsprop_noinherit nologin noinherit in role app_user;
      exception when duplicate_object or unique_violation then null; end;
      begin create role rlsprop_owner nologin;
      exception when duplicate_object or unique_violation then null; end;
      begin create role rlsprop_plain nologin;
      exception when duplicate_object or unique_violation then null; end;
      begin create role rlsprop_owner_noinherit nologin noinherit in role rlsprop_owner;
      exception when duplicate_object or unique_violation then null; end;
    end
    $$;
    grant rlsprop_member, rlsprop_noinherit, rlsprop_owner, rlsprop_owner_noinherit, rlsprop_plain
      to herald_authenticator;

    -- RLS off: every role with SELECT sees every row.
    create table public.rp_off (id int primary key, tag text);
    -- RLS on, no policy: only the owner (not forced) sees rows.
    create table public.rp_nopolicy (id int primary key, tag text);
    alter table public.rp_nopolicy enable row level security;
    -- Only a restrictive policy: nobody (restrictive ones only narrow).
    create table public.rp_restrictive (id int primary key, tag text);
    alter table public.rp_restrictive enable row level security;
    create policy only_narrows on public.rp_restrictive as restrictive for select using (true);
    -- Policies for particular roles, inherited or not.
    create table public.rp_roles (id int primary key, tag text, secret text);
    alter table public.rp_roles enable row level security;
    create policy for_app on public.rp_roles for select to app_user using (tag = 'app');
    create policy for_plain on public.rp_roles for select to rlsprop_plain using (tag = 'plain');
    create policy for_claims on public.rp_roles for select
      using (tag = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');
    -- Owned by a caller's role, without and with FORCE.
    create table public.rp_owned (id int primary key, tag text);
    alter table public.rp_owned enable row level security;
    create policy owned_app on public.rp_owned for select using (tag = 'app');
    create table public.rp_forced (id int primary key, tag text);
    alter table public.rp_forced enable row level security;
    alter table public.rp_forced force row level security;
    create policy forced_app on public.rp_forced for select using (tag = 'app');
    alter table public.rp_owned owner to rlsprop_owner;
    alter table public.rp_forced owner to rlsprop_owner;

    grant select on public.rp_off, public.rp_nopolicy, public.rp_restrictive, public.rp_owned,
      public.rp_forced to app_user, rlsprop_plain;
    -- The owner's privileges do not pass to a NOINHERIT member: granted its own.
    grant select on public.rp_owned, public.rp_forced to rlsprop_owner_noinherit;
    grant select (id, tag) on public.rp_roles to app_user, rlsprop_plain, rlsprop_noinherit;";

const TABLES: [Table; 6] = [
    Table {
        name: "public.rp_off",
        pk: &[("id", "int4")],
    },
    Table {
        name: "public.rp_nopolicy",
        pk: &[("id", "int4")],
    },
    Table {
        name: "public.rp_restrictive",
        pk: &[("id", "int4")],
    },
    Table {
        name: "public.rp_roles",
        pk: &[("id", "int4")],
    },
    Table {
        name: "public.rp_owned",
        pk: &[("id", "int4")],
    },
    Table {
        name: "public.rp_forced",
        pk: &[("id", "int4")],
    },
];

const TAGS: [&str; 4] = ["app", "plain", "x", "7"];

#[derive(Clone, Debug)]
struct Case {
    /// Per table: the tag of each row (id = position).
    rows: Vec<Vec<Option<usize>>>,
    /// (role index, sub) of each caller.
    callers: Vec<(usize, Option<usize>)>,
    shuffle: u64,
}

fn strategy() -> impl Strategy<Value = Case> {
    let rows = vec(
        vec(option::weighted(0.85, 0..TAGS.len()), 0..=8),
        TABLES.len(),
    );
    let callers = vec((0..ROLES.len(), option::of(0..TAGS.len())), 1..=6);
    (rows, callers, any::<u64>()).prop_map(|(rows, callers, shuffle)| Case {
        rows,
        callers,
        shuffle,
    })
}

async fn case(h: &Harness, s: &Case, stats: &Cell<Stats>) -> Result<(), TestCaseError> {
    let contexts: Vec<Context> = s
        .callers
        .iter()
        .map(|&(role, sub)| {
            let mut claims = json!({"role": ROLES[role]});
            if let Some(sub) = sub {
                claims["sub"] = json!(TAGS[sub]);
            }
            Context {
                label: format!("{} sub {:?}", ROLES[role], sub.map(|t| TAGS[t])),
                caller: Caller::new(ROLES[role].into(), claims, None),
                sees_nothing: false,
            }
        })
        .collect();
    for (table, rows) in TABLES.iter().zip(&s.rows) {
        h.app.sql(&format!("truncate {}", table.name)).await;
        let mut note = format!("{}:", table.name);
        for (id, tag) in rows.iter().enumerate() {
            let tag = tag.map(|t| TAGS[t]);
            let extra = if table.name == "public.rp_roles" {
                ", secret"
            } else {
                ""
            };
            let values = if extra.is_empty() {
                "$1, $2"
            } else {
                "$1, $2, 's'"
            };
            h.app
                .admin
                .execute(
                    &format!(
                        "insert into {} (id, tag{extra}) values ({values})",
                        table.name
                    ),
                    &[&(id as i32), &tag],
                )
                .await
                .unwrap();
            note.push_str(&format!(" {id}:{tag:?}"));
        }
        compare_table(h, table, &contexts, s.shuffle, &[], stats, &note).await?;
    }
    Ok(())
}

#[test]
fn authorizer_agrees_with_live_rls_across_roles_owners_and_table_settings() {
    let stats = check_property(24, Some(SETUP), strategy(), case);
    assert!(
        stats.visible > 0 && stats.hidden > 0 && stats.narrowed > 0,
        "vacuous run: {stats:?}"
    );
}
