-- Cluster-wide roles pgherald needs. Run by `pgherald migrate` before the
-- versioned migrations; idempotent. Roles are not part of a database, so they
-- cannot live in a migration that is recorded per database.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'app_user') then
    create role app_user nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'herald_authenticator') then
    -- NOINHERIT: the login role holds no table privileges of its own; it only
    -- switches (transaction-locally) to the role a token names.
    create role herald_authenticator login noinherit nobypassrls nosuperuser;
  end if;
end
$$;
grant app_user to herald_authenticator;
