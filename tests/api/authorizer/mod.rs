//! The authorizer on one connection, called directly (as the listener's pool
//! would, one pooled connection after another call), across catalog changes
//! and lost snapshots:
//!
//! - [`catalog_changes`]: whatever a session keeps from one call to the next
//!   (the plans of the queries computing a role's predicate and columns, the
//!   session functions that evaluate a predicate), a change of the catalog
//!   that decides what a role sees counts in the very next call on the same
//!   connection: policies; row-level security enabled, disabled, forced; the
//!   owner; table and column privileges, to the role and to PUBLIC; columns
//!   added, renamed, dropped; role memberships, direct and inherited; the
//!   role attributes BYPASSRLS, SUPERUSER and INHERIT;
//! - [`flight`]: the transactions of a page's moments go in one flight; each
//!   moment is judged in its own snapshot, and one whose snapshot can no
//!   longer be imported is judged now, alone, leaving the connection usable
//!   and outside any transaction.
//!
//! Every test runs as a role of its own (roles belong to the whole cluster,
//! which tests share): named after the test process, dropped at the end
//! (roles left by a test process that has exited are dropped by the next).

mod catalog_changes;
mod flight;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pgherald::auth::Caller;
use pgherald::db::authorizer::{self, Check, Moment};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::helpers::{TestApp, connect, spawn_app};

/// Prefix of the roles these tests create.
const PREFIX: &str = "pgherald_az";

/// What a call answered for one row image.
#[derive(Debug, PartialEq, Eq)]
struct Judged {
    /// Whether the caller may see it.
    visible: bool,
    /// The columns of the image it may see (sorted).
    columns: Vec<String>,
}

/// A test's database, its role `role` (granted to the login role, so that
/// calls may assume it) and the table `public.notes (id, owner, secret)`:
/// row-level security enabled, a policy letting a caller read the notes it
/// owns (`owner` = the `sub` claim, "me"), `role` granted SELECT on it. The
/// authorizer is called on `client`, one connection of the login role, for
/// the whole test.
struct Fixture {
    app: TestApp,
    client: Client,
    role: String,
    relid: u32,
    roles: Vec<String>,
}

impl Fixture {
    async fn new() -> Fixture {
        let app = spawn_app().await;
        drop_leftover_roles(&app).await;
        let mut fixture = Fixture {
            client: connect(&app.app_url).await,
            app,
            role: String::new(),
            relid: 0,
            roles: Vec::new(),
        };
        fixture.role = fixture.create_role("caller", "").await;
        fixture
            .sql(&format!("grant {} to herald_authenticator", fixture.role))
            .await;
        fixture.create_table().await;
        fixture
            .sql(&format!("grant select on public.notes to {}", fixture.role))
            .await;
        fixture
    }

    /// Creates `public.notes`, its row-level security and policy, without
    /// any grant.
    async fn create_table(&mut self) {
        self.sql(
            "create table public.notes (id int primary key, owner text, secret text);
             alter table public.notes enable row level security;
             create policy mine on public.notes for select
               using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');",
        )
        .await;
        self.relid = self
            .app
            .admin
            .query_one("select 'public.notes'::regclass::oid", &[])
            .await
            .unwrap()
            .get(0);
    }

    /// Replaces `public.notes` by a table of default privileges (no ACL):
    /// only its owner may select it.
    async fn replace_table_without_grants(&mut self) {
        self.sql("drop table public.notes").await;
        self.create_table().await;
    }

    /// A new role `create role <name> nologin <options>`, dropped by
    /// [`Self::finish`].
    async fn create_role(&mut self, what: &str, options: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{PREFIX}{}_{}_{what}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.sql(&format!("create role {name} nologin {options}"))
            .await;
        self.roles.push(name.clone());
        name
    }

    /// Runs `sql` as the owner.
    async fn sql(&self, sql: &str) {
        self.app.sql(sql).await;
    }

    /// One call on the test's connection: may the caller ("me", as `role`)
    /// see a note of `owner`, and which of the image's columns? The image
    /// carries the columns the tests add and rename, too.
    async fn judge(&mut self, owner: &str) -> Judged {
        let image = Arc::new(json!({
            "id": 1, "owner": owner, "secret": "s", "added": "a", "renamed": "r"
        }));
        let caller = Caller::new(
            self.role.clone(),
            json!({"sub": "me", "role": self.role}),
            None,
        );
        let check = Check {
            context: 0,
            relid: self.relid,
            image: image.clone(),
            moment: Moment::Now,
        };
        let verdicts = authorizer::authorize(&mut self.client, &[&caller], &[check])
            .await
            .expect("the call succeeds");
        assert_eq!(verdicts.failure(0), None, "the context is evaluated");
        Judged {
            visible: verdicts.visible(0),
            columns: columns(&verdicts.restrict(0, self.relid, &image)),
        }
    }

    /// Whether the caller may see a note of `owner`.
    async fn sees(&mut self, owner: &str) -> bool {
        self.judge(owner).await.visible
    }

    /// Drops the test's roles (and what they own, and were granted).
    async fn finish(self) {
        for role in self.roles.iter().rev() {
            self.sql(&format!(
                "reassign owned by {role} to current_user; drop owned by {role}; drop role {role};"
            ))
            .await;
        }
    }
}

/// The sorted keys of an image.
fn columns(image: &Value) -> Vec<String> {
    let mut keys: Vec<String> = image
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// `names` as owned strings, for comparing with [`Judged::columns`].
fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// Drops roles of test processes that have exited (a failed test keeps its
/// roles until then). A role that still owns objects in another database
/// stays until that database is dropped.
async fn drop_leftover_roles(app: &TestApp) {
    let rows = app
        .admin
        .query(
            "select rolname::text from pg_roles where rolname like 'pgherald\\_az%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if gone {
            let _ = app
                .admin
                .batch_execute(&format!("drop owned by {name}; drop role {name}"))
                .await;
        }
    }
}
