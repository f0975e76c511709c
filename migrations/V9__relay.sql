-- Relay mode, and a cheaper capture.
--
-- A transaction that NOTIFYs holds a cluster-wide lock from just before its
-- commit until after its WAL flush, so the commits of notifying transactions
-- are serialised. In relay mode (`herald.track(tbl, relay => true)`) the
-- capture trigger only writes the outbox; one pgherald instance, elected
-- with an advisory lock (src/events/relay.rs), polls for relay-mode events
-- committed since its last look (herald.relay_poll) and sends one wake-up
-- per batch of them from its own transaction. Default mode is unchanged: the
-- trigger notifies, one wake-up per writing transaction.
--
-- It replaces only what it owns (the capture functions, track, the outbox's
-- capture-time index) and assumes nothing of other versions but V1, so that
-- a lower version applied after it (see src/db/migrate.rs) finds what it
-- expects.

-- The mode of each tracked table, for instances, the relay and operators.
alter table herald.tracked add column relay boolean not null default false;

-- The outbox's capture-time index serves only herald.prune, which deletes
-- by age. Rows are appended in capture order, so a BRIN index finds the old
-- ones as well as a btree did, at a fraction of the writers' cost (no index
-- entry per row).
drop index herald.events_committed_at;
create index events_committed_at on herald.events using brin (committed_at)
  with (autosummarize = on);

-- Row trigger of default mode: one outbox row per changed row, and a wake-up
-- NOTIFY (constant payload: one per transaction). Arguments as in V1: the
-- tracked table's oid (a partitioned table's parent), then its primary key
-- columns. Stores exactly what V1's did; cheaper to run: the key is built
-- column by column with simple expressions, which PL/pgSQL evaluates
-- directly, instead of a subquery, which runs through the executor per row.
create or replace function herald.capture() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  img_new jsonb;
  img_old jsonb;
  img     jsonb;
  key     jsonb := '{}';
begin
  if tg_op <> 'DELETE' then img_new := to_jsonb(new); end if;
  if tg_op <> 'INSERT' then img_old := to_jsonb(old); end if;
  img := coalesce(img_new, img_old);
  for i in 1 .. tg_nargs - 1 loop
    key := key || jsonb_build_object(tg_argv[i], img -> tg_argv[i]);
  end loop;
  insert into herald.events (relid, table_name, op, pk, new_row, old_row)
  values (tg_argv[0]::oid, tg_argv[0]::oid::regclass::text, tg_op, key, img_new, img_old);
  perform pg_notify('herald', '');
  return null;
end
$$;

-- Row trigger of relay mode: the same outbox row, no NOTIFY (the relay
-- sends the wake-up). Kept a twin of herald.capture rather than one function
-- with a mode argument, so that a table's triggers say which mode it is in.
create function herald.capture_relayed() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  img_new jsonb;
  img_old jsonb;
  img     jsonb;
  key     jsonb := '{}';
begin
  if tg_op <> 'DELETE' then img_new := to_jsonb(new); end if;
  if tg_op <> 'INSERT' then img_old := to_jsonb(old); end if;
  img := coalesce(img_new, img_old);
  for i in 1 .. tg_nargs - 1 loop
    key := key || jsonb_build_object(tg_argv[i], img -> tg_argv[i]);
  end loop;
  insert into herald.events (relid, table_name, op, pk, new_row, old_row)
  values (tg_argv[0]::oid, tg_argv[0]::oid::regclass::text, tg_op, key, img_new, img_old);
  return null;
end
$$;

-- Statement trigger of relay mode: a TRUNCATE, without NOTIFY.
create function herald.capture_truncate_relayed() returns trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  insert into herald.events (relid, table_name, op, pk)
  values (tg_argv[0]::oid, tg_argv[0]::oid::regclass::text, 'TRUNCATE', '{}');
  return null;
end
$$;

-- track gains the mode; its argument list changes, so it is dropped and
-- created again. `herald.track(tbl)` is `herald.track(tbl, relay => false)`:
-- default mode, as before. Calling it again with the other mode switches the
-- table's triggers; with the same mode it changes nothing. It wakes every
-- listener on commit, so that events written in the old mode just before
-- the switch are read at once rather than at the next safety read.
drop function herald.track(regclass);
create function herald.track(tbl regclass, relay boolean default false) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  pk   name[];
  nsp  name;
  rel  name;
  kind "char";
  row_fn   text := case when relay then 'capture_relayed' else 'capture' end;
  trunc_fn text := case when relay then 'capture_truncate_relayed' else 'capture_truncate' end;
begin
  if relay is null then
    raise exception 'herald.track: relay must be true or false'
      using errcode = '22004';
  end if;
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
    'for each row execute function herald.%I(%L, %s)',
    tbl, row_fn, tbl::oid::text, (select string_agg(quote_literal(c), ', ') from unnest(pk) c));
  execute format(
    'create trigger herald_truncate after truncate on %s '
    'for each statement execute function herald.%I(%L)',
    tbl, trunc_fn, tbl::oid::text);
  insert into herald.tracked (relid, schema_name, table_name, pk_columns, relay)
  values (tbl, nsp, rel, pk, relay)
  on conflict (relid) do update
    set schema_name = excluded.schema_name,
        table_name = excluded.table_name,
        pk_columns = excluded.pk_columns,
        relay = excluded.relay;
  perform pg_notify('herald', '');
end
$$;

-- The relay's poll: whether events of relay-mode tables committed after
-- snapshot `since` (null: the relay just started), and if so one wake-up
-- NOTIFY, sent by this call's own (autocommit) transaction. Returns the
-- snapshot it looked up to (the next call's `since`), how many tables are in
-- relay mode, and whether it notified.
--
-- The transactions that committed in between are the ones in progress at
-- `since` and done now, and those started since and done now, so the scan is
-- bounded by recent writes: the xid index from `since`'s xmax on, and index
-- probes for the few transactions `since` saw in progress. A transaction
-- that stays open long is not scanned again and again, and commits of other
-- tables, or of tables in default mode, never cause a wake-up.
create function herald.relay_poll(since text)
returns table (snapshot text, relay_tables int, notified boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  now_  pg_snapshot := pg_current_snapshot();
  prev  pg_snapshot := since::pg_snapshot;
  rels  oid[];
  fresh boolean := false;
begin
  select coalesce(array_agg(t.relid), '{}') into rels from herald.tracked t where t.relay;
  if cardinality(rels) > 0 then
    fresh := prev is null
      or exists (
        select 1 from herald.events e
         where e.xid >= pg_snapshot_xmax(prev) and e.xid < pg_snapshot_xmax(now_)
           and pg_visible_in_snapshot(e.xid, now_)
           and e.relid = any(rels))
      or exists (
        select 1 from herald.events e
         where e.xid = any(array(select x from pg_snapshot_xip(prev) x
                                  where pg_visible_in_snapshot(x, now_)))
           and e.relid = any(rels));
    if fresh then
      perform pg_notify('herald', '');
    end if;
  end if;
  return query select now_::text, cardinality(rels), fresh;
end
$$;

revoke all on function herald.capture_relayed(), herald.capture_truncate_relayed(),
  herald.track(regclass, boolean), herald.relay_poll(text) from public;
grant execute on function herald.relay_poll(text) to herald_authenticator;
