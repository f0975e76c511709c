//! Which database roles a token may name, and the start-up safety rails on the
//! login role.

use std::collections::HashSet;
use std::sync::Mutex;

use deadpool_postgres::Pool;

use super::DbError;

/// Roles the login role may switch to, checked against Postgres and cached.
#[derive(Debug, Default)]
pub struct RoleGate {
    /// Roles seen to be allowed. Only positive answers are cached, so a role
    /// granted later is picked up; a std Mutex is fine, it is never held
    /// across an await.
    allowed: Mutex<HashSet<String>>,
}

impl RoleGate {
    /// Whether the login role is a member of `role`.
    pub async fn may_assume(&self, pool: &Pool, role: &str) -> Result<bool, DbError> {
        if self.allowed.lock().expect("role cache").contains(role) {
            return Ok(true);
        }
        let client = pool.get().await?;
        let row = client
            .query_one(
                "select exists (select 1 from pg_roles r
                                 where r.rolname = $1
                                   and not r.rolsuper and not r.rolbypassrls
                                   and r.rolname <> session_user
                                   and pg_has_role(session_user, r.oid, 'MEMBER'))",
                &[&role],
            )
            .await?;
        let ok: bool = row.get(0);
        if ok {
            self.allowed
                .lock()
                .expect("role cache")
                .insert(role.to_owned());
        }
        Ok(ok)
    }
}

/// A login role that would let callers bypass row-level security.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeLogin {
    /// Superusers bypass RLS.
    #[error("the login role {0} is a superuser; it must not be (RLS would not apply)")]
    Superuser(String),
    /// BYPASSRLS bypasses RLS.
    #[error("the login role {0} has BYPASSRLS; it must not")]
    BypassRls(String),
    /// Owners bypass RLS unless FORCE ROW LEVEL SECURITY.
    #[error("the login role {role} owns tracked table {table}; owners bypass row-level security")]
    OwnsTable {
        /// Login role.
        role: String,
        /// Table.
        table: String,
    },
    /// The check itself failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Refuses to serve with a login role that bypasses RLS.
pub async fn check_login_role(pool: &Pool) -> Result<(), UnsafeLogin> {
    let client = pool.get().await.map_err(DbError::from)?;
    let row = client
        .query_one(
            "select session_user::text, rolsuper, rolbypassrls from pg_roles where rolname = session_user",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    let role: String = row.get(0);
    if row.get::<_, bool>(1) {
        return Err(UnsafeLogin::Superuser(role));
    }
    if row.get::<_, bool>(2) {
        return Err(UnsafeLogin::BypassRls(role));
    }
    let owned = client
        .query(
            "select format('%I.%I', t.schema_name, t.table_name)
               from herald.tracked t join pg_class c on c.oid = t.relid
              where pg_has_role(session_user, c.relowner, 'USAGE') and not c.relforcerowsecurity",
            &[],
        )
        .await
        .map_err(DbError::from)?;
    if let Some(row) = owned.first() {
        return Err(UnsafeLogin::OwnsTable {
            role,
            table: row.get(0),
        });
    }
    Ok(())
}
