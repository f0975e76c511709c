-- The outbox in a ring of partitions emptied whole, and one index fewer.
--
-- Until V10, herald.prune deleted old events row by row: under sustained
-- writes the outbox's space was reused after VACUUM but never returned, and
-- every prune wrote as much WAL as the events it removed. From here on
-- herald.events is partitioned into a fixed ring of 8 partitions
-- (herald.events_0 .. herald.events_7), and prune empties a partition whose
-- events have all passed the retention with TRUNCATE, which returns its
-- space at once.
--
-- Why a ring of fixed partitions emptied with TRUNCATE, rather than time
-- ranges created ahead and dropped (pg_partman's way):
--
-- * Writers can never miss a partition. The partition key is a function of
--   the event's id, `(id >> 40) & 7`, and the eight partitions hold its eight
--   values, created once, here. Nothing has to be created ahead, and no
--   prune that fails to run (the service down for a week) can make a writer
--   fail.
-- * Removal never makes writers wait. Dropping or detaching a partition
--   takes an ACCESS EXCLUSIVE lock on the partitioned table, which conflicts
--   with every writer (an INSERT locks it in ROW EXCLUSIVE mode), and such a
--   request queued behind one long transaction makes every later writer
--   queue behind it. TRUNCATE of a partition locks that partition only;
--   writers insert into the current partition and never touch an old one (an
--   INSERT routed through the parent opens only the partition its row goes
--   to), so they never conflict with it. Readers of the outbox (the
--   listener, the relay, resumes) do; prune asks for that lock with a short
--   lock_timeout, and when it does not get it in time deletes the
--   partition's events instead (MVCC-safe, compatible with readers and
--   writers), returning the space by TRUNCATE at a later run.
--
-- Generations. The id's high bits are its generation (id >> 40), and a
-- generation lives in partition `generation & 7`. Prune rotates, starting
-- the next generation (setval of the id's sequence to its first id), when
-- the current one is older than keep / 7 and the next partition is empty;
-- so in steady state each partition holds about keep / 7 of events, and the
-- outbox about keep * 8/7 (plus a prune interval). 2^40 ids per generation
-- cannot run out between two prunes; 2^23 generations last 80 years of
-- rotations every 5 minutes. The generation only places events: whether a
-- partition may be emptied is decided from what it holds (see herald.prune),
-- so an id of an old generation written late can only keep a partition
-- longer, never remove an event early.
--
-- Reads stay about as fast (the listener reads a page per batch, the relay
-- polls every 2 ms): herald.outbox_slots records, for each partition no longer
-- written, a transaction id above every event's in it, and the readers name
-- only the partitions that may hold events of the transactions they look
-- for (usually the current one), so that Postgres plans and scans only
-- those; planning a read of all eight costs 0.3 ms more than a read of an
-- unpartitioned table.
--
-- Indexes: the btree on xid finds a batch, the BRIN on committed_at finds
-- the events younger than the retention. The primary key on id is gone: the
-- reads, planned with their parameters, find events by xid and sort a page
-- by id (EXPLAIN on 2M events: the id index was not used by read_events),
-- ids are unique without it (an identity, GENERATED ALWAYS), and each event
-- was paying an index entry for it (67 bytes of WAL of 1,020).
--
-- It replaces only what it owns (the outbox, prune, and the functions that
-- read the outbox: read_events, changed_rows, relay_poll, with the same
-- signatures and results) and assumes nothing of other versions but V1, V6
-- and V9 (see src/db/migrate.rs).

-- The outbox, partitioned. Same columns, types, defaults and order as V1's.
alter table herald.events rename to events_unpartitioned;
alter sequence herald.events_id_seq rename to events_unpartitioned_id_seq;
alter index herald.events_xid rename to events_unpartitioned_xid;
alter index herald.events_committed_at rename to events_unpartitioned_committed_at;
alter index herald.events_pkey rename to events_unpartitioned_pkey;
alter table herald.events_unpartitioned
  rename constraint events_op_check to events_unpartitioned_op_check;

create table herald.events (
  -- No cache: a backend holding ids of a generation after a rotation would
  -- keep writing into its partition.
  id           bigint generated always as identity (cache 1),
  xid          xid8 not null default pg_current_xact_id(),
  relid        oid not null,
  table_name   text not null,
  op           text not null check (op in ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')),
  pk           jsonb not null,
  new_row      jsonb,
  old_row      jsonb,
  -- Capture time of the change (clock time inside the writing transaction).
  committed_at timestamptz not null default clock_timestamp()
) partition by list (((id >> 40) & 7));

do $$
begin
  for slot in 0 .. 7 loop
    execute format('create table herald.%I partition of herald.events for values in (%s)',
                   'events_' || slot, slot);
  end loop;
end
$$;

create index events_xid on herald.events (xid);
create index events_committed_at on herald.events using brin (committed_at)
  with (autosummarize = on);

-- The events written so far move over, ids and all, and the identity
-- continues after them (in their generation).
insert into herald.events overriding system value
select id, xid, relid, table_name, op, pk, new_row, old_row, committed_at
  from herald.events_unpartitioned;
select pg_catalog.setval('herald.events_id_seq',
                         greatest((select max(id) from herald.events_unpartitioned), 1),
                         (select count(*) > 0 from herald.events_unpartitioned));
drop table herald.events_unpartitioned;

revoke all on herald.events from public;
do $$
begin
  for slot in 0 .. 7 loop
    execute format('revoke all on herald.%I from public', 'events_' || slot);
  end loop;
end
$$;

-- The ring's bookkeeping, one row per partition:
--   generation  the generation it holds (or held, once emptied)
--   started_at  when that generation started (prune rotates by its age)
--   xid_below   every event in the partition, and every event that may
--               still be written into it, has a smaller xid; null while it
--               is written (or not known yet). Readers skip partitions
--               whose xid_below is at most the first transaction they look
--               for.
create table herald.outbox_slots (
  slot       bigint primary key check (slot between 0 and 7),
  generation bigint,
  started_at timestamptz,
  xid_below  xid8
);
-- Partitions with events (those of the generations moved over) are read
-- until prune has seen them; empty ones hold no generation yet, so nothing
-- can be written into them before a rotation reaches them: any xid is above
-- their events.
insert into herald.outbox_slots (slot, generation, started_at, xid_below)
select s,
       case when s = (q.last_value >> 40) & 7 then q.last_value >> 40 end,
       case when s = (q.last_value >> 40) & 7
            then coalesce((select min(committed_at) from herald.events), now()) end,
       case when s <> (q.last_value >> 40) & 7
             and not exists (select from herald.events e where ((e.id >> 40) & 7) = s)
            then pg_current_xact_id() end
  from generate_series(0, 7) s, herald.events_id_seq q;
revoke all on herald.outbox_slots from public;

-- The readers below read only the partitions that may hold events of
-- transactions from the first one they look for on: those still written,
-- those whose xid_below is above that transaction, and the one the id
-- sequence is in now (whatever outbox_slots says), as an array of partition
-- key values for `((e.id >> 40) & 7) = any(parts)`. They are PL/pgSQL, so
-- that the array is known when the query is planned and Postgres plans and
-- opens only those partitions (a SQL function's statement is planned with
-- its parameters unknown). The array's query is repeated in each rather
-- than called: a function pinning search_path costs a few microseconds per
-- call, and the relay polls every 2 ms.

-- The listener's and catch-up's read (V1's contract, unchanged): the events
-- committed after snapshot `low` and visible in snapshot `high`, with an id
-- above `after_id`, in id order, at most `lim`.
create or replace function herald.read_events(low text, high text, after_id bigint, lim bigint)
returns table (id bigint, xid bigint, relid oid, table_name text, op text,
               new_row jsonb, old_row jsonb, committed_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  lo    pg_snapshot := low::pg_snapshot;
  hi    pg_snapshot := high::pg_snapshot;
  parts bigint[];
begin
  select array_agg(s.slot) into parts
    from herald.outbox_slots s, herald.events_id_seq q
   where s.xid_below is null or s.xid_below > pg_snapshot_xmin(lo)
      or s.slot = (q.last_value >> 40) & 7;
  return query
  select e.id, e.xid::text::bigint, e.relid, e.table_name, e.op, e.new_row, e.old_row, e.committed_at
    from herald.events e
   where ((e.id >> 40) & 7) = any(parts)
     and e.xid >= pg_snapshot_xmin(lo)
     and e.xid < pg_snapshot_xmax(hi)
     and pg_visible_in_snapshot(e.xid, hi)
     and not pg_visible_in_snapshot(e.xid, lo)
     and e.id > after_id
   order by e.id
   limit greatest(lim, 0);
end
$$;

-- Resume's list of changed rows (V6's contract, unchanged), reading only
-- the partitions that may hold its events.
create or replace function herald.changed_rows(rel oid, low text, high text, after_id bigint,
                                               upto text, lim bigint)
returns table (key text, before jsonb, gone boolean, last_xid bigint, last_id bigint,
               last_at timestamptz)
language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
declare
  parts bigint[];
begin
  select array_agg(s.slot) into parts
    from herald.outbox_slots s, herald.events_id_seq q
   where s.xid_below is null or s.xid_below > pg_snapshot_xmin(low::pg_snapshot)
      or s.slot = (q.last_value >> 40) & 7;
  return query
  with missed as (
    select e.id, e.xid, e.op, e.new_row, e.old_row, e.committed_at
      from herald.events e
     where ((e.id >> 40) & 7) = any(parts)
       and e.relid = rel
       and e.xid >= pg_catalog.pg_snapshot_xmin(low::pg_catalog.pg_snapshot)
       and e.xid < pg_catalog.pg_snapshot_xmax(upto::pg_catalog.pg_snapshot)
       and pg_catalog.pg_visible_in_snapshot(e.xid, upto::pg_catalog.pg_snapshot)
       and not pg_catalog.pg_visible_in_snapshot(e.xid, low::pg_catalog.pg_snapshot)
       -- The rest of the cursor's own batch, then everything after it.
       and (e.id > after_id
            or not pg_catalog.pg_visible_in_snapshot(e.xid, high::pg_catalog.pg_snapshot))
  ),
  images as (
    select m.id, m.xid, m.committed_at, v.img, v.is_old,
           (select pg_catalog.jsonb_object_agg(k, v.img -> k)
              from herald.tracked t, unnest(t.pk_columns) k
             where t.relid = rel) as key
      from missed m
     cross join lateral (values (m.old_row, true), (m.new_row, false)) v(img, is_old)
     where v.img is not null
  )
  (select null::text, null::jsonb, true, m.xid::text::bigint, m.id, m.committed_at
     from missed m
    where m.op = 'TRUNCATE'
    order by m.id
    limit 1)
  union all
  (select i.key::text,
          -- The first image of the key is its old image when it existed at the cursor.
          (pg_catalog.array_agg(case when i.is_old then i.img end order by i.id, not i.is_old))[1],
          -- Its last image is an old one when no row has the key any more.
          (pg_catalog.array_agg(i.is_old order by i.id desc, i.is_old))[1],
          (pg_catalog.array_agg(i.xid::text::bigint order by i.id desc))[1],
          max(i.id),
          (pg_catalog.array_agg(i.committed_at order by i.id desc))[1]
     from images i
    group by i.key
    order by max(i.id)
    limit greatest(lim, 0));
end
$$;

-- The relay's poll (V9's contract, unchanged), reading only the partitions
-- that may hold events of the transactions it looks at: it runs every 2 ms.
create or replace function herald.relay_poll(since text)
returns table (snapshot text, relay_tables int, notified boolean)
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
declare
  now_  pg_snapshot := pg_current_snapshot();
  prev  pg_snapshot := since::pg_snapshot;
  rels  oid[];
  parts bigint[];
  fresh boolean := false;
begin
  select coalesce(array_agg(t.relid), '{}') into rels from herald.tracked t where t.relay;
  if cardinality(rels) > 0 then
    if prev is not null then
      select array_agg(s.slot) into parts
        from herald.outbox_slots s, herald.events_id_seq q
       where s.xid_below is null or s.xid_below > pg_snapshot_xmin(prev)
          or s.slot = (q.last_value >> 40) & 7;
    end if;
    fresh := prev is null
      or exists (
        select 1 from herald.events e
         where ((e.id >> 40) & 7) = any(parts)
           and e.xid >= pg_snapshot_xmax(prev) and e.xid < pg_snapshot_xmax(now_)
           and pg_visible_in_snapshot(e.xid, now_)
           and e.relid = any(rels))
      or exists (
        select 1 from herald.events e
         where ((e.id >> 40) & 7) = any(parts)
           and e.xid = any(array(select x from pg_snapshot_xip(prev) x
                                  where pg_visible_in_snapshot(x, now_)))
           and e.relid = any(rels));
    if fresh then
      perform pg_notify('herald', '');
    end if;
  end if;
  return query select now_::text, cardinality(rels), fresh;
end
$$;

-- Removes the events older than `keep`, a partition at a time; returns how
-- many. Retention is "at least keep": a partition is emptied only once every
-- event in it is older than `keep`, so events live up to about keep * 8/7
-- (see the header), and up to one prune interval more.
--
-- Each run:
-- 1. Rotates when the current generation is older than keep / 7 (at once
--    for keep = 0) and holds events, if the next partition is empty.
-- 2. Records xid_below of the partitions no longer written, but for one
--    this run's rotation closed: a transaction id assigned now, after the
--    rotation that moved past them, is above that of every event of theirs
--    (a capture trigger runs after its row was written, so a writer has its
--    xid before it takes an event id). Not when the calling transaction
--    already had an xid (it may be older); the next run does it then.
-- 3. Looks at each other non-empty partition, each in a subtransaction:
--    takes a SHARE lock on it, which waits for a writer still inserting
--    into it (one that took its id just before a rotation), keeps new ones
--    out and lets readers through. With that lock held its contents are
--    final: whether any event is younger than `keep` (the BRIN index), how
--    many there are, and their newest xid (the xid index).
-- 4. Empties the partitions whose events are all older than `keep`: an
--    ACCESS EXCLUSIVE lock on each (readers of the outbox hold ACCESS SHARE
--    on the partitions they read), then TRUNCATE; and moves
--    herald.retention.pruned_xid up to their newest xid, so that cursors
--    that may have missed one of their events are refused. These locks are
--    taken last, so that readers wait for the truncations and the commit
--    only, never for the counting. Writers never wait for any of them: they
--    do not use these partitions.
--    When that lock is not granted within lock_timeout (50 ms: readers
--    queue behind the request that long at most), the partition is being
--    read: a long transaction reading the outbox, or a listener's held
--    snapshot (src/events/moments.rs: the transaction holding a batch's end
--    reads its first page, and stays open until the next batch). Its events
--    are then deleted instead, with the SHARE lock still held: MVCC-safe
--    and lock-compatible with readers, but it writes WAL and the space is
--    only reused; so a later run empties such a partition, once nobody
--    reads it, with TRUNCATE (checked empty under its ACCESS EXCLUSIVE
--    lock), which returns the space.
-- 5. When the first step could not rotate because the next partition was
--    not empty yet and the fourth emptied it, rotates then.
--
-- A resume (src/events/catchup.rs) reads the outbox in a snapshot taken
-- before it locks the outbox's partitions; herald.outbox_snapshot tells it
-- when a TRUNCATE slipped in between.
create or replace function herald.prune(keep interval) returns bigint
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set lock_timeout = '50ms'
-- "Any event younger than keep" must use the BRIN index, not read the
-- partition through; and a plan made costly that way must not be compiled.
set enable_seqscan = off
set jit = off
as $$
declare
  had_xid boolean := pg_current_xact_id_if_assigned() is not null;
  before  bigint;
  current bigint;
  part    text;
  young   boolean;
  n       bigint;
  newest  xid8;
  parts   text[] := '{}';
  counts  bigint[] := '{}';
  newests xid8[] := '{}';
  removed bigint := 0;
  rotated boolean;
begin
  if keep is null or keep < interval '0' then
    raise exception 'herald.prune: keep must be a non-negative interval, got %', keep
      using errcode = '22023';
  end if;
  -- One prune at a time (instances prune on their own schedules): wait for
  -- another to finish, up to its own bound (a few lock timeouts).
  perform set_config('lock_timeout', '5s', true);
  perform pg_advisory_xact_lock(727276);
  perform set_config('lock_timeout', '50ms', true);
  select (q.last_value >> 40) & 7 into before from herald.events_id_seq q;
  rotated := herald.outbox_rotate(keep);
  select (q.last_value >> 40) & 7 into current from herald.events_id_seq q;
  -- Not the partition this run's rotation closed: this transaction's xid
  -- may have been assigned before it.
  if not had_xid then
    update herald.outbox_slots set xid_below = pg_current_xact_id()
     where xid_below is null and slot <> current and slot <> before;
  end if;
  for slot in 0 .. 7 loop
    continue when current = slot;
    part := format('herald.%I', 'events_' || slot);
    execute format('select not exists (select from %s)', part) into young;
    if young then
      -- Emptied by a DELETE earlier (see below): its space is still to be
      -- returned.
      if pg_relation_size(part::regclass) > 0 then
        parts := parts || part;
        counts := counts || 0::bigint;
        newests := newests || null::xid8;
      end if;
      continue;
    end if;
    begin
      execute format('lock table %s in share mode', part);
      execute format('select exists (select from %s where committed_at >= $1)', part)
        into young using now() - keep;
      if not young then
        execute format('select count(*), max(xid) from %s', part) into n, newest;
        parts := parts || part;
        counts := counts || n;
        newests := newests || newest;
      end if;
    exception when lock_not_available then
      raise notice 'herald.prune: a writer still holds %; it is left for the next prune', part;
    end;
  end loop;
  for i in 1 .. cardinality(parts) loop
    begin
      execute format('lock table %s in access exclusive mode', parts[i]);
      -- Nobody else holds it now: whatever is in it is visible here.
      execute format('select not exists (select from %s)', parts[i]) into young;
      if counts[i] > 0 or young then
        execute format('truncate %s', parts[i]);
      end if;
    exception when lock_not_available then
      -- Being read (a listener holds the snapshot of its last batch open
      -- after reading it, a long transaction reads the outbox): the events
      -- go all the same, row by row (MVCC, so the readers keep what they
      -- see); a later prune returns the space once nobody reads it.
      if counts[i] > 0 then
        execute format('delete from %s', parts[i]);
        raise notice 'herald.prune: % is being read: its events were deleted, its space is returned later',
          parts[i];
      end if;
    end;
    if counts[i] > 0 then
      update herald.retention
         set pruned_xid = case when pruned_xid is null or pruned_xid < newests[i]
                               then newests[i] else pruned_xid end;
      removed := removed + counts[i];
    end if;
  end loop;
  if not rotated then
    perform herald.outbox_rotate(keep);
  end if;
  return removed;
end
$$;

-- Steps 1 and 5 of herald.prune: starts the next generation if the current
-- one is due and holds events and the next partition is empty. Returns
-- whether it did. The sequence is not transactional: were the calling
-- transaction rolled back, the ids of the new generation are used anyway,
-- and outbox_slots catches up at the next prune (which records the
-- generation's start then: only the next rotation is later).
create function herald.outbox_rotate(keep interval) returns boolean
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  current  bigint;
  cur_slot bigint;
  started  timestamptz;
  recorded bigint;
  empty    boolean;
begin
  select q.last_value >> 40 into current from herald.events_id_seq q;
  cur_slot := current & 7;
  select s.generation, s.started_at into recorded, started
    from herald.outbox_slots s where s.slot = cur_slot;
  if recorded is distinct from current then
    update herald.outbox_slots s
       set generation = current, started_at = now(), xid_below = null
     where s.slot = cur_slot;
    return false;
  end if;
  if started > now() - keep / 7 then
    return false;
  end if;
  execute format('select not exists (select from herald.%I)', 'events_' || cur_slot) into empty;
  if empty then
    return false;
  end if;
  execute format('select not exists (select from herald.%I)', 'events_' || ((cur_slot + 1) & 7))
    into empty;
  if not empty then
    return false;
  end if;
  -- The next partition is written from now on: readers must look at it
  -- before any event reaches it.
  update herald.outbox_slots s
     set generation = current + 1, started_at = clock_timestamp(), xid_below = null
   where s.slot = (cur_slot + 1) & 7;
  perform setval('herald.events_id_seq', (current + 1) << 40, false);
  return true;
end
$$;

-- A resume's first statement, in its repeatable-read transaction: locks the
-- outbox's partitions (ACCESS SHARE, until the transaction ends, so that
-- none is emptied under it) and returns the transaction's snapshot. The
-- snapshot is taken when the statement starts, before the lock: a prune
-- whose TRUNCATE committed in between emptied a partition whose events this
-- snapshot still sees, while herald.retention as this snapshot sees it does
-- not say so. That is detected (the partition's storage as this snapshot's
-- catalog rows describe it is not the one it has now) and reported as a
-- serialization failure (40001): the caller starts again.
create function herald.outbox_snapshot() returns text
language plpgsql volatile security definer set search_path = pg_catalog, pg_temp as $$
begin
  lock table herald.events in access share mode;
  if exists (
    select from pg_inherits i join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'herald.events'::regclass
       and c.relfilenode <> pg_relation_filenode(c.oid)) then
    raise exception 'herald.outbox_snapshot: the outbox was pruned as this transaction started'
      using errcode = '40001', hint = 'Start the transaction again.';
  end if;
  return pg_current_snapshot()::text;
end
$$;

revoke all on function herald.outbox_rotate(interval),
  herald.outbox_snapshot() from public;
grant execute on function herald.outbox_snapshot() to herald_authenticator;
