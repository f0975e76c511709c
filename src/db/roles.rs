//! Which database roles a token may name, and the start-up safety rails on the
//! login role.
//!
//! A token's role must be one the login role is a member of (it switches to
//! it with `set local role`), must not be the login role itself, and must not
//! escape row-level security: not a superuser, not BYPASSRLS, and without the
//! privileges of the owner of a tracked table that does not FORCE ROW LEVEL
//! SECURITY (owners bypass their tables' policies). The same rails apply to
//! the login role at start-up ([`check_login_role`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::DbError;

/// Why a role may not be assumed, or `null` when it may: one query, so that
/// the refusal can be logged with its reason. `$1` is the role's name.
const ROLE_CHECK: &str = "
select case
         when r.oid is null then 'does not exist'
         when r.rolname = session_user then 'is the login role'
         when not pg_has_role(session_user, r.oid, 'MEMBER')
           then 'is not granted to the login role'
         when r.rolsuper then 'is a superuser (row-level security would not apply)'
         when r.rolbypassrls then 'has BYPASSRLS (row-level security would not apply)'
         else (select format('has the privileges of the owner of tracked table %I.%I, '
                             'which does not FORCE ROW LEVEL SECURITY (owners bypass its policies)',
                             t.schema_name, t.table_name)
                 from herald.tracked t join pg_class c on c.oid = t.relid
                where pg_has_role(r.oid, c.relowner, 'USAGE') and not c.relforcerowsecurity
                order by t.schema_name, t.table_name
                limit 1)
       end
  from (select $1::text as name) wanted
  left join pg_roles r on r.rolname = wanted.name";

/// Roles the login role may switch to, checked against Postgres and cached
/// for a while.
#[derive(Debug)]
pub struct RoleGate {
    /// How long an allowed role is trusted before it is checked again.
    ttl: Duration,
    /// Roles seen to be allowed, and when. Only positive answers are cached,
    /// so a role granted later is picked up at once; a revoked one after at
    /// most `ttl`. A std Mutex is fine, it is never held across an await.
    allowed: Mutex<HashMap<String, Instant>>,
}

impl Default for RoleGate {
    fn default() -> Self {
        RoleGate::new(Duration::from_secs(60))
    }
}

impl RoleGate {
    /// A gate that trusts an allowed role for `ttl` (zero: checks every time).
    pub fn new(ttl: Duration) -> RoleGate {
        RoleGate {
            ttl,
            allowed: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a caller may assume `role` (see the module documentation). A
    /// refusal is logged with its reason; the client learns only that the
    /// role is not allowed.
    pub async fn may_assume(&self, pool: &Pool, role: &str) -> Result<bool, DbError> {
        {
            let mut allowed = self.allowed.lock().expect("role cache");
            match allowed.get(role) {
                Some(at) if at.elapsed() < self.ttl => return Ok(true),
                Some(_) => {
                    allowed.remove(role);
                }
                None => {}
            }
        }
        let client = pool.get().await?;
        let row = client.query_one(ROLE_CHECK, &[&role]).await?;
        let refusal: Option<String> = row.get(0);
        match refusal {
            None => {
                self.allowed
                    .lock()
                    .expect("role cache")
                    .insert(role.to_owned(), Instant::now());
                Ok(true)
            }
            Some(reason) => {
                tracing::info!(role, reason = %reason, "token refused: its role may not be assumed");
                Ok(false)
            }
        }
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
