-- herald: capture of row changes into an outbox, and the SQL API.
-- `pgherald migrate` creates the schema first, because the migration history
-- (herald.schema_history) lives in it.
create schema if not exists herald;

-- Tables whose changes are captured, with their primary key columns.
create table herald.tracked (
  relid       oid primary key,
  schema_name name not null,
  table_name  name not null,
  pk_columns  name[] not null,
  unique (schema_name, table_name)
);

-- The outbox. `xid` is the writing transaction's full id: readers take
-- everything committed between two snapshots (see src/events/listener.rs).
create table herald.events (
  id           bigint generated always as identity primary key,
  xid          xid8 not null default pg_current_xact_id(),
  relid        oid not null,
  table_name   text not null,
  op           text not null check (op in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
  pk           jsonb not null,
  new_row      jsonb,
  old_row      jsonb,
  -- Capture time of the change (clock time inside the writing transaction).
  committed_at timestamptz not null default clock_timestamp()
);
create index events_xid on herald.events (xid);
create index events_committed_at on herald.events (committed_at);

-- The only way to read the outbox: it holds every tenant's rows, so no role
-- but its owner may select from it. The listener and cursor catch-up read
-- through this function (granted to the login role only): the events
-- committed after snapshot `low` and visible in snapshot `high`, with an id
-- above `after_id`, in id order, at most `lim`. The xid range lets the index
-- on xid bound the scan; the visibility tests pick exactly the transactions
-- between the two snapshots (see src/events/listener.rs).
create function herald.read_events(low text, high text, after_id bigint, lim bigint)
returns table (id bigint, xid bigint, relid oid, table_name text, op text,
               new_row jsonb, old_row jsonb, committed_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select e.id, e.xid::text::bigint, e.relid, e.table_name, e.op, e.new_row, e.old_row, e.committed_at
    from herald.events e
   where e.xid >= pg_catalog.pg_snapshot_xmin(low::pg_catalog.pg_snapshot)
     and e.xid < pg_catalog.pg_snapshot_xmax(high::pg_catalog.pg_snapshot)
     and pg_catalog.pg_visible_in_snapshot(e.xid, high::pg_catalog.pg_snapshot)
     and not pg_catalog.pg_visible_in_snapshot(e.xid, low::pg_catalog.pg_snapshot)
     and e.id > after_id
   order by e.id
   limit greatest(lim, 0)
$$;

-- Singleton: the newest transaction id whose events were pruned. A cursor
-- older than that may have missed events and must resync.
create table herald.retention (
  only_row   boolean primary key default true check (only_row),
  pruned_xid xid8
);
insert into herald.retention default values;

-- Identity of this database: instance id generated at migration time, plus
-- the server's system identifier and timeline where the migrating role may
-- read them. A cursor from another identity is refused ("resync required").
create table herald.meta (
  only_row    boolean primary key default true check (only_row),
  instance_id text not null default md5(random()::text || clock_timestamp()::text)
);
insert into herald.meta default values;

create function herald.server_identity() returns text
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  ident text;
begin
  select instance_id into ident from herald.meta;
  begin
    select ident || ':' || s.system_identifier || ':' || c.timeline_id
      into ident
      from pg_control_system() s, pg_control_checkpoint() c;
  exception when insufficient_privilege then
    null; -- not readable by the owner: the instance id alone identifies the database
  end;
  return ident;
end
$$;

-- Row trigger: one outbox row per changed row, and a wake-up NOTIFY. The
-- payload is constant, so Postgres folds all of a transaction's wake-ups into
-- one notification at commit. Arguments: the tracked table's oid (for a
-- partitioned table, the parent's: changes of every partition are reported
-- under it), then its primary key columns.
create function herald.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  img_new jsonb;
  img_old jsonb;
  img     jsonb;
  rel     oid := tg_argv[0]::oid;
begin
  if tg_op <> 'DELETE' then img_new := to_jsonb(new); end if;
  if tg_op <> 'INSERT' then img_old := to_jsonb(old); end if;
  img := coalesce(img_new, img_old);
  insert into herald.events (relid, table_name, op, pk, new_row, old_row)
  values (
    rel,
    rel::regclass::text,
    tg_op,
    (select jsonb_object_agg(k, img -> k) from unnest(tg_argv[1:]) k),
    img_new,
    img_old
  );
  perform pg_notify('herald', '');
  return null;
end
$$;

-- Statement trigger: a TRUNCATE is one event with no row images.
create function herald.capture_truncate() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  insert into herald.events (relid, table_name, op, pk)
  values (tg_argv[0]::oid, tg_argv[0]::oid::regclass::text, 'TRUNCATE', '{}');
  perform pg_notify('herald', '');
  return null;
end
$$;

create function herald.track(tbl regclass) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  pk   name[];
  nsp  name;
  rel  name;
  kind "char";
begin
  select n.nspname, c.relname, c.relkind into nsp, rel, kind
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.oid = tbl;
  if kind not in ('r', 'p') then
    raise exception 'herald.track: % is not a table', tbl
      using errcode = '42809', hint = 'Track the table a view reads from.';
  end if;
  if exists (select 1 from pg_inherits i where i.inhrelid = tbl) then
    raise exception 'herald.track: % is a partition', tbl
      using errcode = '42809', hint = 'Track the partitioned table; its partitions are captured under its name.';
  end if;
  select array_agg(a.attname order by k.ord) into pk
    from pg_index i
    cross join lateral unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
   where i.indrelid = tbl and i.indisprimary;
  if pk is null then
    raise exception 'herald.track: table % has no primary key', tbl
      using errcode = '22023', hint = 'Add a primary key; events are keyed by it.';
  end if;
  execute format('drop trigger if exists herald_capture on %s', tbl);
  execute format('drop trigger if exists herald_truncate on %s', tbl);
  -- On a partitioned table the row trigger is cloned to every partition,
  -- present and future.
  execute format(
    'create trigger herald_capture after insert or update or delete on %s '
    'for each row execute function herald.capture(%L, %s)',
    tbl, tbl::oid::text, (select string_agg(quote_literal(c), ', ') from unnest(pk) c));
  execute format(
    'create trigger herald_truncate after truncate on %s '
    'for each statement execute function herald.capture_truncate(%L)',
    tbl, tbl::oid::text);
  insert into herald.tracked (relid, schema_name, table_name, pk_columns)
  values (tbl, nsp, rel, pk)
  on conflict (relid) do update
    set schema_name = excluded.schema_name,
        table_name = excluded.table_name,
        pk_columns = excluded.pk_columns;
end
$$;

create function herald.untrack(tbl regclass) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  execute format('drop trigger if exists herald_capture on %s', tbl);
  execute format('drop trigger if exists herald_truncate on %s', tbl);
  delete from herald.tracked where relid = tbl;
end
$$;

-- Deletes events older than `keep`; returns how many. Records the newest
-- pruned xid so stale cursors are refused instead of silently skipping.
create function herald.prune(keep interval) returns bigint
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  n      bigint;
  newest xid8;
begin
  with gone as (
    delete from herald.events where committed_at < now() - keep returning xid
  )
  select count(*), (select g.xid from gone g order by g.xid desc limit 1)
    into n, newest from gone;
  if newest is not null then
    update herald.retention
       set pruned_xid = case when pruned_xid is null or pruned_xid < newest
                             then newest else pruned_xid end;
  end if;
  return n;
end
$$;

-- The row-level-security predicate Postgres would apply to SELECTs of `rel`
-- by `role`, as SQL text over the table's columns: permissive policies ORed,
-- restrictive ones ANDed, no applicable policy = deny. 'true' where RLS does
-- not apply (RLS off, superuser, BYPASSRLS, owner without FORCE).
create function herald.visibility_predicate(rel oid, role name) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
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
  where c.oid = rel and r.rolname = role
$$;

-- Columns of `rel` that `role` may select.
create function herald.selectable_columns(rel oid, role name) returns text[]
language sql stable set search_path = pg_catalog, pg_temp as $$
  select coalesce(array_agg(a.attname::text order by a.attnum), '{}')
    from pg_attribute a
   where a.attrelid = rel and a.attnum > 0 and not a.attisdropped
     and has_column_privilege(role, rel, a.attnum, 'SELECT')
$$;

-- The authorizer: for each security context (role + JWT claims) and the row
-- images checked under it, whether that context may see each image, plus the
-- columns it may select per table. One call per page of events. Role and
-- claims are switched only transaction-locally; call it inside a transaction.
--   roles[c], claims[c]: context c (1-based; ctx holds 0-based indexes), the
--     claims as JSON text, so that claims jsonb cannot hold fail their context
--     alone instead of the whole call
--   check i: may context ctx[i] see images[img[i]] (1-based), a row of table rel[i]?
-- Each image is sent once and referenced by index (one event's row is checked
-- under many contexts). Checks are grouped once per (context, table), and
-- each role's predicate and columns computed once per table per call.
--
-- Failures stay with their context: each (context, table) is evaluated in its
-- own subtransaction, which is always rolled back at its end (the results
-- survive in variables), so nothing a context's policies set leaks into the
-- next. A context whose claims do not convert, whose role cannot be assumed
-- (dropped, renamed, no longer granted to the login role), or whose columns
-- and predicate cannot be computed, is reported as failed ('failed' row,
-- `failure` = 'claims', 'role' or 'policy') and its other rows are to be
-- ignored. A policy that raises an error hides the row it raised on, as the
-- error would in a live SELECT, and no other: when the query over all of a
-- (context, table)'s images fails, each image is evaluated alone (bounded by
-- the page: at most two images per event), and those that raise are reported
-- as 'hidden'. A cancelled query (statement_timeout, pg_cancel_backend) is not
-- caught: the whole call fails, and the caller retries context by context.
-- Rows: kind 'verdict' (chk, visible), 'hidden' (chk; visible is false),
-- 'columns' (context, relid, columns), 'failed' (context, failure, detail).
create function herald.authorize(roles text[], claims text[], ctx int[], rel oid[], img int[], images jsonb[])
returns table (kind text, chk int, visible boolean, context int, relid oid, columns text[],
               failure text, detail text)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  t       record;
  r       record;
  role    text;
  cl      text;
  key     text;
  pred    text;
  cols    text[];
  preds   jsonb := '{}';
  colsets jsonb := '{}';
  failed  int[] := '{}';
  stage   text;
  ids     int[];
  vis     boolean[];
  hid     boolean[];
  v       boolean;
  errs    int;
  err     text;
begin
  for t in
    select u.cx, u.r as relid,
           format('%I.%I', n.nspname, cl.relname) as qualified, cl.relname::text as alias,
           array_agg(u.i::int order by u.i) as idxs, array_agg(u.im order by u.i) as ims
      from unnest(ctx, rel, img) with ordinality u(cx, r, im, i)
      join pg_catalog.pg_class cl on cl.oid = u.r
      join pg_catalog.pg_namespace n on n.oid = cl.relnamespace
     group by u.cx, u.r, n.nspname, cl.relname
     order by u.cx, u.r
  loop
    continue when t.cx = any(failed);
    stage := null;
    begin
      stage := 'claims';
      cl := coalesce(claims[t.cx + 1], '{}')::jsonb::text;
      stage := 'role';
      role := roles[t.cx + 1];
      if role is null then
        raise exception 'no role for context %', t.cx;
      end if;
      -- Can the login role still become it? (Dropped, renamed or revoked
      -- roles fail here, before anything is computed for them.)
      perform pg_catalog.set_config('role', role, true);
      perform pg_catalog.set_config('role', 'none', true);
      stage := 'policy';
      key := role || '/' || t.relid;
      if not preds ? key then
        cols := herald.selectable_columns(t.relid, role);
        pred := case when cardinality(cols) = 0 then 'false'
                     else coalesce(herald.visibility_predicate(t.relid, role), 'false') end;
        preds := preds || jsonb_build_object(key, pred);
        colsets := colsets || jsonb_build_object(key, to_jsonb(cols));
      end if;
      pred := preds ->> key;
      cols := array(select jsonb_array_elements_text(colsets -> key));
      perform pg_catalog.set_config('role', role, true);
      perform pg_catalog.set_config('request.jwt.claims', cl, true);
      begin
        execute format(
          'select array_agg(herald__u.herald__i), array_agg(coalesce((%s), false)), '
          '       array_agg(false) '
          'from unnest($1::int[], $2::int[]) as herald__u(herald__i, herald__im) '
          'join unnest($3::jsonb[]) with ordinality as herald__x(herald__img, herald__n) '
          '  on herald__x.herald__n = herald__u.herald__im '
          'cross join lateral jsonb_populate_record(null::%s, herald__x.herald__img) as %I',
          pred, t.qualified, t.alias)
          into ids, vis, hid
          using t.idxs, t.ims, images;
      exception when others then
        -- Some row raised: evaluate each alone, hiding only those that raise.
        ids := '{}'; vis := '{}'; hid := '{}'; errs := 0;
        for r in select u.i, u.im from unnest(t.idxs, t.ims) u(i, im) loop
          begin
            execute format(
              'select coalesce((%s), false) from jsonb_populate_record(null::%s, $1) as %I',
              pred, t.qualified, t.alias)
              into v
              using images[r.im];
            ids := ids || r.i; vis := vis || coalesce(v, false); hid := hid || false;
          exception when others then
            ids := ids || r.i; vis := vis || false; hid := hid || true;
            errs := errs + 1; err := sqlerrm;
          end;
        end loop;
        raise warning 'herald.authorize: policy of % failed for role % on % of % rows (hidden): %',
          t.qualified, role, errs, cardinality(t.idxs), err;
      end;
      -- Undo everything set for this context (role, claims, and whatever its
      -- policies set): the next context starts clean.
      raise exception using errcode = 'HR000';
    exception
      when sqlstate 'HR000' then
        stage := null;
      when others then
        failed := failed || t.cx;
        raise warning 'herald.authorize: context % (role %) failed (%): %', t.cx, roles[t.cx + 1], stage, sqlerrm;
        return query select 'failed', null::int, null::boolean, t.cx, null::oid, null::text[], stage, sqlerrm;
    end;
    if stage is null then
      return query select 'columns', null::int, null::boolean, t.cx, t.relid, cols, null::text, null::text;
      return query select case when u.h then 'hidden' else 'verdict' end, u.i, u.v, null::int,
                          null::oid, null::text[], null::text, null::text
                     from unnest(ids, vis, hid) u(i, v, h);
    end if;
  end loop;
end
$$;

-- The one place SQL switches identity for a caller's queries and mutations.
create function herald.set_context(role text, claims jsonb) returns void
language sql volatile set search_path = pg_catalog, pg_temp as $$
  select pg_catalog.set_config('request.jwt.claims', claims::text, true),
         pg_catalog.set_config('role', role, true);
$$;

revoke all on schema herald from public;
revoke all on all tables in schema herald from public;
revoke all on all functions in schema herald from public;
grant usage on schema herald to herald_authenticator, app_user;
-- Not herald.events: the outbox is read through herald.read_events only.
grant select on herald.tracked, herald.retention to herald_authenticator;
grant execute on function herald.server_identity(), herald.prune(interval),
  herald.read_events(text, text, bigint, bigint),
  herald.visibility_predicate(oid, name), herald.selectable_columns(oid, name),
  herald.authorize(text[], text[], int[], oid[], int[], jsonb[]), herald.set_context(text, jsonb)
  to herald_authenticator;
grant execute on function herald.visibility_predicate(oid, name), herald.selectable_columns(oid, name)
  to app_user;
