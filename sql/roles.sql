-- Cluster-wide roles pgherald needs. Run by `pgherald migrate` before the
-- versioned migrations; idempotent. Roles are not part of a database, so they
-- cannot live in a migration that is recorded per database. Advisory locks are
-- per database, so migrators of two databases of one cluster may race here:
-- a role or membership created concurrently counts as created.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'app_user') then
    begin
      create role app_user nologin;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'herald_authenticator') then
    begin
      -- NOINHERIT: the login role holds no table privileges of its own; it only
      -- switches (transaction-locally) to the role a token names.
      create role herald_authenticator login noinherit nobypassrls nosuperuser;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;
  if not pg_has_role('herald_authenticator', 'app_user', 'member') then
    begin
      grant app_user to herald_authenticator;
    exception when unique_violation then
      null;
    end;
  end if;
end
$$;
