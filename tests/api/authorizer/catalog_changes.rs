//! A catalog change that decides what a role sees counts in the very next
//! call on the same connection: the session keeps nothing from an earlier
//! call that could answer for the catalog as it was.

use super::{Fixture, Judged, names};

#[tokio::test]
async fn a_policy_created_altered_or_dropped_counts_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    assert!(f.sees("me").await && !f.sees("other").await);

    f.sql("create policy everyone on public.notes for select using (owner <> 'hidden')")
        .await;
    assert!(
        f.sees("other").await,
        "a permissive policy created: ORed in"
    );
    assert!(!f.sees("hidden").await);

    f.sql("alter policy everyone on public.notes using (true)")
        .await;
    assert!(f.sees("hidden").await, "the policy altered");

    f.sql(
        "create policy narrow on public.notes as restrictive for select using (owner <> 'other')",
    )
    .await;
    assert!(
        !f.sees("other").await,
        "a restrictive policy created: ANDed in"
    );

    f.sql("drop policy narrow on public.notes; drop policy everyone on public.notes")
        .await;
    assert!(f.sees("me").await && !f.sees("hidden").await, "dropped");

    f.sql("drop policy mine on public.notes").await;
    assert!(!f.sees("me").await, "no policy left: no row");
    f.finish().await;
}

#[tokio::test]
async fn enabling_or_disabling_row_level_security_counts_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    assert!(!f.sees("other").await);

    f.sql("alter table public.notes disable row level security")
        .await;
    assert!(f.sees("other").await, "without RLS every row");

    f.sql("alter table public.notes enable row level security")
        .await;
    assert!(!f.sees("other").await, "with RLS the policies again");
    f.finish().await;
}

#[tokio::test]
async fn forcing_row_level_security_on_the_caller_s_own_table_counts_in_the_next_call_on_the_same_connection()
 {
    let mut f = Fixture::new().await;
    f.sql(&format!("alter table public.notes owner to {}", f.role))
        .await;
    assert!(f.sees("other").await, "an owner bypasses its policies");

    f.sql("alter table public.notes force row level security")
        .await;
    assert!(!f.sees("other").await, "unless its table forces them");
    assert!(f.sees("me").await);

    f.sql("alter table public.notes no force row level security")
        .await;
    assert!(f.sees("other").await, "forced no more");
    f.finish().await;
}

#[tokio::test]
async fn a_change_of_owner_counts_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    assert!(!f.sees("other").await);

    f.sql(&format!("alter table public.notes owner to {}", f.role))
        .await;
    assert!(
        f.sees("other").await,
        "the caller's role now owns the table"
    );

    f.sql("alter table public.notes owner to current_user")
        .await;
    assert!(!f.sees("other").await, "and no longer");

    // With default privileges (no ACL at all) only the owner changes: the
    // caller has no privilege on the table until it owns it.
    f.replace_table_without_grants().await;
    assert_eq!(
        f.judge("other").await,
        Judged {
            visible: false,
            columns: vec![]
        }
    );
    f.sql(&format!("alter table public.notes owner to {}", f.role))
        .await;
    assert_eq!(
        f.judge("other").await,
        Judged {
            visible: true,
            columns: names(&["id", "owner", "secret"])
        },
        "the owner: every row and column"
    );
    f.finish().await;
}

#[tokio::test]
async fn table_privileges_granted_or_revoked_count_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    let all = names(&["id", "owner", "secret"]);
    assert_eq!(
        f.judge("me").await,
        Judged {
            visible: true,
            columns: all.clone()
        }
    );

    f.sql(&format!("revoke select on public.notes from {}", f.role))
        .await;
    assert_eq!(
        f.judge("me").await,
        Judged {
            visible: false,
            columns: vec![]
        },
        "no privilege: nothing"
    );

    f.sql("grant select on public.notes to public").await;
    assert_eq!(
        f.judge("me").await,
        Judged {
            visible: true,
            columns: all
        },
        "granted to PUBLIC"
    );

    f.sql("revoke select on public.notes from public").await;
    assert!(!f.sees("me").await, "revoked from PUBLIC");
    f.finish().await;
}

#[tokio::test]
async fn column_privileges_granted_or_revoked_count_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    f.sql(&format!(
        "revoke select on public.notes from {role}; grant select (id, owner) on public.notes to {role}",
        role = f.role
    ))
    .await;
    assert_eq!(f.judge("me").await.columns, names(&["id", "owner"]));

    f.sql(&format!(
        "grant select (secret) on public.notes to {}",
        f.role
    ))
    .await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["id", "owner", "secret"])
    );

    f.sql(&format!(
        "revoke select (secret) on public.notes from {}",
        f.role
    ))
    .await;
    assert_eq!(f.judge("me").await.columns, names(&["id", "owner"]));

    f.sql("grant select (secret) on public.notes to public")
        .await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["id", "owner", "secret"]),
        "a column granted to PUBLIC"
    );

    f.sql("revoke select (secret) on public.notes from public")
        .await;
    assert_eq!(f.judge("me").await.columns, names(&["id", "owner"]));

    f.sql(&format!(
        "revoke select (id, owner) on public.notes from {}",
        f.role
    ))
    .await;
    assert_eq!(
        f.judge("me").await,
        Judged {
            visible: false,
            columns: vec![]
        },
        "no column left"
    );
    f.finish().await;
}

#[tokio::test]
async fn columns_added_renamed_or_dropped_count_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["id", "owner", "secret"])
    );

    f.sql("alter table public.notes add column added text")
        .await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["added", "id", "owner", "secret"])
    );

    f.sql("alter table public.notes rename column secret to renamed")
        .await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["added", "id", "owner", "renamed"])
    );

    f.sql("alter table public.notes drop column added").await;
    assert_eq!(
        f.judge("me").await.columns,
        names(&["id", "owner", "renamed"])
    );

    // The policy reads `owner`: renamed, the image's `owner` is no column.
    f.sql("alter table public.notes rename column owner to owner_name")
        .await;
    assert_eq!(
        f.judge("me").await,
        Judged {
            visible: false,
            columns: names(&["id", "renamed"])
        },
        "the policy now reads owner_name, which the image lacks"
    );
    f.finish().await;
}

#[tokio::test]
async fn a_membership_granted_or_revoked_counts_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    let group = f.create_role("group", "").await;
    f.sql(&format!(
        "create policy for_group on public.notes for select to {group} using (true)"
    ))
    .await;
    assert!(!f.sees("other").await, "not a member");

    f.sql(&format!("grant {group} to {}", f.role)).await;
    assert!(
        f.sees("other").await,
        "a member: the group's policy applies"
    );

    f.sql(&format!("revoke {group} from {}", f.role)).await;
    assert!(!f.sees("other").await, "a member no more");
    f.finish().await;
}

#[tokio::test]
async fn a_membership_of_a_role_the_caller_inherits_from_counts_in_the_next_call_on_the_same_connection()
 {
    let mut f = Fixture::new().await;
    let group = f.create_role("group", "").await;
    let middle = f.create_role("middle", "").await;
    f.sql(&format!(
        "grant {middle} to {role};
         grant select on public.notes to {group};
         revoke select on public.notes from {role};
         create policy for_group on public.notes for select to {group} using (true)",
        role = f.role
    ))
    .await;
    assert_eq!(
        f.judge("other").await,
        Judged {
            visible: false,
            columns: vec![]
        }
    );

    f.sql(&format!("grant {group} to {middle}")).await;
    assert_eq!(
        f.judge("other").await,
        Judged {
            visible: true,
            columns: names(&["id", "owner", "secret"])
        },
        "through {middle}: the group's policy and privileges"
    );

    f.sql(&format!("revoke {group} from {middle}")).await;
    assert!(!f.sees("other").await, "{middle} left the group");
    f.finish().await;
}

#[tokio::test]
async fn bypassrls_and_superuser_count_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    assert!(!f.sees("other").await);

    f.sql(&format!("alter role {} bypassrls", f.role)).await;
    assert!(f.sees("other").await, "BYPASSRLS");

    f.sql(&format!("alter role {} nobypassrls", f.role)).await;
    assert!(!f.sees("other").await, "NOBYPASSRLS");

    f.sql(&format!(
        "revoke select on public.notes from {role}; alter role {role} superuser",
        role = f.role
    ))
    .await;
    assert_eq!(
        f.judge("other").await,
        Judged {
            visible: true,
            columns: names(&["id", "owner", "secret"])
        },
        "a superuser: every row and column, granted or not"
    );

    f.sql(&format!("alter role {} nosuperuser", f.role)).await;
    assert!(!f.sees("me").await, "NOSUPERUSER, and no privilege");
    f.finish().await;
}

#[tokio::test]
async fn inheritance_switched_counts_in_the_next_call_on_the_same_connection() {
    let mut f = Fixture::new().await;
    let group = f.create_role("group", "").await;
    f.sql(&format!(
        "alter role {role} noinherit;
         grant {group} to {role};
         create policy for_group on public.notes for select to {group} using (true)",
        role = f.role
    ))
    .await;
    assert!(
        !f.sees("other").await,
        "a member that does not inherit: not the group's policy"
    );

    // From Postgres 16 a membership's own INHERIT option decides (the role
    // attribute only sets the default of new grants).
    let version: i32 = f
        .app
        .admin
        .query_one("select current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let inherit = match version {
        ..160000 => format!("alter role {} inherit", f.role),
        _ => format!("grant {group} to {} with inherit true", f.role),
    };
    f.sql(&inherit).await;
    assert!(
        f.sees("other").await,
        "inherits: the group's policy applies"
    );
    f.finish().await;
}
