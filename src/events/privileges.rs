//! Column privileges revoked while subscriptions run. A filter is checked
//! against its role's selectable columns when its subscription starts; a
//! `REVOKE` later would leave it evaluating a column the subscriber can no
//! longer see, so that delivering or not would reveal the hidden value.
//! Every catalog change (`GRANT` and `REVOKE` notify it, and the periodic
//! comparison catches databases without event triggers) re-checks the
//! running filters and ends those that name a column their role may no
//! longer select.

use std::collections::HashMap;

use deadpool_postgres::Pool;

use super::hub::Hub;
use crate::db::DbError;

/// Ends the subscriptions of `hub` whose filters name columns their role
/// may no longer select; returns how many. Roles that no longer exist are
/// left to the authorizer (their contexts fail at the next event).
pub async fn recheck(hub: &Hub, pool: &Pool) -> Result<usize, DbError> {
    let pairs = hub.filtered_pairs();
    if pairs.is_empty() {
        return Ok(0);
    }
    let roles: Vec<&str> = pairs.iter().map(|(r, _)| r.as_str()).collect();
    let tables: Vec<u32> = pairs.iter().map(|(_, t)| *t).collect();
    let client = pool.get().await?;
    let rows = client
        .query(
            "select u.r, u.t, herald.selectable_columns(u.t, u.r)
               from unnest($1::text[], $2::oid[]) u(r, t)
              where exists (select 1 from pg_catalog.pg_roles where rolname = u.r)",
            &[&roles, &tables],
        )
        .await?;
    let selectable: HashMap<(String, u32), Vec<String>> = rows
        .iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect();
    let ended =
        hub.end_unselectable(|role, relid| selectable.get(&(role.to_owned(), relid)).cloned());
    if ended > 0 {
        tracing::info!(
            ended,
            "subscriptions ended: their filters use columns their role may no longer select"
        );
    }
    Ok(ended)
}
