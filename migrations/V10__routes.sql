-- Routing by policy (src/db/routes.rs): when a table's SELECT policies
-- compare a column with something that depends only on the caller (its
-- claims, its role, and rows of tracked tables), each subscriber's allowed
-- values of that column (its "keys") are computed once and kept, and an
-- event goes only to the subscribers whose keys hold the row's value,
-- instead of being checked under every subscriber's context.
--
-- Kept keys are only as good as what they were computed from, so:
--   * herald.routing_version() fingerprints every catalog a route depends on;
--     the listener reads it in each snapshot it holds, and routes are used
--     for a batch only when both ends of the batch show the version the
--     routes were derived under;
--   * the rows a route reads must be in tracked tables, so that any change
--     to them is an event the listener sees (and then recomputes the keys).

-- A fingerprint of the catalogs that policies, privileges and routes depend
-- on, as seen by the current snapshot. Any policy, role, membership, grant,
-- user function, tracked table or column change changes it.
-- (PL/pgSQL so that its plan is kept: a SQL function is planned anew on
-- every call, 0.75 ms instead of 0.1.)
create function herald.routing_version() returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  return concat_ws('/',
    (select count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) from pg_policy),
    (select count(*) || ':' || coalesce(sum(xmin::text::bigint), 0) from pg_auth_members),
    (select count(*) || ':' || coalesce(sum(hashtext(concat_ws(',', oid, rolname, rolsuper,
                                                           rolinherit, rolbypassrls))), 0)
       from pg_roles),
    -- User functions, but not sessions' temporary ones (the authorizer's
    -- own, migrations/V7, come and go with its connections).
    (select count(*) || ':' || coalesce(sum(p.xmin::text::bigint), 0)
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where p.oid >= 16384 and n.nspname not like 'pg\_temp\_%'),
    -- (Laterals: index lookups per tracked table, where a join would scan
    -- pg_attribute whole: 30 µs instead of 450.)
    (select count(*) || ':' || coalesce(sum(c.x + t.xmin::text::bigint), 0)
       from herald.tracked t
       cross join lateral (select c.xmin::text::bigint as x from pg_class c
                            where c.oid = t.relid offset 0) c),
    (select count(*) || ':' || coalesce(sum(a.x), 0)
       from herald.tracked t
       cross join lateral (select a.xmin::text::bigint as x from pg_attribute a
                            where a.attrelid = t.relid and a.attnum > 0 offset 0) a));
end
$$;

-- The SELECT policies of `rel` that apply to `role`, as stored trees and as
-- SQL text. `restricts` is false when row-level security does not restrict
-- the role on this table at all (then there are no policy rows); no rows at
-- all when the role does not exist or the login role may not become it.
create function herald.route_policies(rel oid, role name)
returns table (restricts boolean, permissive boolean, tree text, expr text)
language sql stable set search_path = pg_catalog, pg_temp as $$
  with state as (
    select c.relrowsecurity
           and not (r.rolsuper or r.rolbypassrls)
           and not (pg_has_role(role, c.relowner, 'USAGE') and not c.relforcerowsecurity)
           as restricts
      from pg_class c, pg_roles r
     where c.oid = rel and r.rolname = role
       -- A role the login role may not become has no route: the authorizer
       -- fails its callers.
       and pg_has_role(current_user, role, 'MEMBER')
  )
  select s.restricts, p.polpermissive, p.polqual::text, pg_get_expr(p.polqual, p.polrelid)
    from state s
    left join pg_policy p
      on s.restricts
     and p.polrelid = rel
     and p.polcmd in ('r', '*')
     and p.polqual is not null
     and (p.polroles = '{0}'
          or exists (select 1 from unnest(p.polroles) pr(oid)
                      where pr.oid <> 0 and pg_has_role(role, pr.oid, 'USAGE')))
$$;

-- What routing needs to know of functions: whether they are built in, their
-- volatility and language, and for SQL functions the parsed tree of their
-- body (null when it is not a single parameterless SELECT: such functions
-- are not routed through). The body is parsed by creating, and at once
-- discarding, a temporary view of it (`body_view`), with the function's own
-- search_path.
create function herald.function_facts(fns oid[])
returns table (fn oid, name text, builtin boolean, volatility "char", language name,
               body_tree text, body_view oid)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  f record;
  tree text;
  probe oid;
  path text;
begin
  for f in
    select p.oid, p.proname::text as name, p.oid < 16384 as builtin, p.provolatile,
           l.lanname, p.prosrc, p.proretset, p.pronargs, p.prokind, p.proconfig
      from pg_proc p join pg_language l on l.oid = p.prolang
     where p.oid = any(fns)
  loop
    tree := null;
    probe := null;
    if not f.builtin and f.lanname = 'sql' and f.pronargs = 0 and f.prokind = 'f' then
      begin
        path := coalesce((select substr(c, length('search_path=') + 1)
                            from unnest(f.proconfig) c where c like 'search_path=%'),
                         'pg_catalog, pg_temp');
        perform pg_catalog.set_config('search_path', path, true);
        execute 'create temporary view herald__body as ' || f.prosrc;
        -- (Before Postgres 16 the tree also holds the view itself twice,
        -- as OLD and NEW: its oid lets the reader skip them.)
        select r.ev_action::text, r.ev_class into tree, probe
          from pg_rewrite r
         where r.ev_class = 'pg_temp.herald__body'::regclass;
        raise exception using errcode = 'HR000';
      exception
        when sqlstate 'HR000' then null;
        when others then tree := null;
      end;
    end if;
    return query select f.oid, f.name, f.builtin, f.provolatile, f.lanname, tree, probe;
  end loop;
end
$$;

-- Each context's keys: for check i, the values that context ctx[i]
-- (roles/claims, 0-based) may see in the routed column, by the key query
-- of route[i] (1-based into arms: a JSON array of arms, each
-- {"scalar": sql} or {"set": sql}). Role and claims are switched
-- transaction-locally and undone per context, as in herald.authorize; a
-- context whose keys cannot be computed is reported with `failed` (it is
-- then checked the generic way).
create function herald.route_keys(roles text[], claims text[], ctx int[], route int[], arms jsonb[])
returns table (chk int, keys text[], failed boolean)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  c record;
  q text;
  k text[];
begin
  for c in select u.cx, u.rt, u.i from unnest(ctx, route) with ordinality u(cx, rt, i) order by u.cx
  loop
    q := (select 'select coalesce(array_agg(distinct herald__k.k), ''{}'') from ('
                 || coalesce(string_agg(case when a ? 'scalar'
                                             then 'select (' || (a ->> 'scalar') || ')::text'
                                             else 'select herald__s.k::text from ('
                                                  || (a ->> 'set') || ') herald__s(k)' end,
                                        ' union all '),
                             'select null::text')
                 || ') herald__k(k) where herald__k.k is not null'
            from jsonb_array_elements(arms[c.rt]) a);
    begin
      perform pg_catalog.set_config('role', roles[c.cx + 1], true);
      perform pg_catalog.set_config('request.jwt.claims', coalesce(claims[c.cx + 1], '{}')::jsonb::text, true);
      execute q into k;
      raise exception using errcode = 'HR000';
    exception
      when sqlstate 'HR000' then
        return query select c.i::int, k, false;
      when others then
        return query select c.i::int, null::text[], true;
    end;
  end loop;
end
$$;

revoke all on function herald.routing_version(), herald.route_policies(oid, name),
  herald.function_facts(oid[]), herald.route_keys(text[], text[], int[], int[], jsonb[]) from public;
grant execute on function herald.routing_version(), herald.route_policies(oid, name),
  herald.function_facts(oid[]), herald.route_keys(text[], text[], int[], int[], jsonb[])
  to herald_authenticator;
