-- The authorizer's per-(role, table) predicate and columns, with their query
-- plans kept by the session. herald.visibility_predicate and
-- herald.selectable_columns were SQL functions: Postgres (before 18) plans a
-- SQL function's query afresh on every call that does not inline it, and
-- these never inline (they SET search_path). That planning was most of their
-- cost: 160-180 us of herald.authorize's ~390 us per call for one context
-- and one row, against 25-35 us for the same queries with kept plans. As
-- PL/pgSQL functions their queries keep their plans for the session; the
-- queries, the contract (arguments, result, grants) and so every answer are
-- those of V1.
--
-- Why not a cache of the answers, checked against a fingerprint of the
-- catalog: a fingerprint that cannot miss a change costs as much as these
-- queries once their plans are kept (measured: 25-28 us for one that hashes
-- every input the answers read, policies, column privileges and role
-- memberships as the functions see them; 43-48 us for one that hashes the
-- catalog rows themselves, with the role's memberships followed
-- recursively), so it saves nothing, and anything it left out would be an
-- answer out of date. With no cache, nothing can be stale.

create or replace function herald.visibility_predicate(rel oid, role name) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  return (
    with pol as (
      select p.polpermissive as permissive,
             '(' || pg_get_expr(p.polqual, p.polrelid) || ')' as qual
        from pg_policy p
       where p.polrelid = rel
         and p.polcmd in ('r', '*')
         and p.polqual is not null
         and (p.polroles = '{0}'
              or exists (select 1 from unnest(p.polroles) pr(oid)
                          where pr.oid <> 0 and pg_has_role(role, pr.oid, 'USAGE')))
    )
    select case
      when not c.relrowsecurity then 'true'
      when r.rolsuper or r.rolbypassrls then 'true'
      when pg_has_role(role, c.relowner, 'USAGE') and not c.relforcerowsecurity then 'true'
      else coalesce((select '(' || string_agg(qual, ' or ') || ')' from pol where permissive), 'false')
        || coalesce((select ' and ' || string_agg(qual, ' and ') from pol where not permissive), '')
    end
    from pg_class c, pg_roles r
    where c.oid = rel and r.rolname = role);
end
$$;

create or replace function herald.selectable_columns(rel oid, role name) returns text[]
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  return (
    select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
      from pg_attribute a
     where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
       and has_column_privilege(role, rel, a.attnum, 'SELECT'));
end
$$;
