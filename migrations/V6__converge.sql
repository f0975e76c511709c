-- Resuming from a cursor converges to the current state. Replaying the row
-- versions a subscriber missed, judged by today's policies, would hand out
-- versions it could never read (written before it joined a tenant, say).
-- Instead it gets the current version of each row changed since its cursor,
-- read under its own role and claims, and a key-only removal for each such
-- row it had and may no longer see. These two functions are the SQL half
-- (src/events/catchup.rs is the other).

-- The rows of table `rel` changed after the cursor (`low`, `high`,
-- `after_id`) and up to snapshot `upto`, one per primary key, ordered by
-- their last change, at most `lim`:
--   key:      the primary key columns (jsonb text, as the capture wrote them)
--   before:   the row as it was at the cursor, if it existed then
--   gone:     no row has this key after its last change (deleted, or its
--             key was updated away)
--   last_*:   transaction, outbox id and capture time of its last change
-- A truncate of the table in that range is returned first as a row whose
-- key is null. Only the login role may call it: it reads the outbox.
create function herald.changed_rows(rel oid, low text, high text, after_id bigint,
                                    upto text, lim bigint)
returns table (key text, before jsonb, gone boolean, last_xid bigint, last_id bigint,
               last_at timestamptz)
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  with missed as (
    select e.id, e.xid, e.op, e.new_row, e.old_row, e.committed_at
      from herald.events e
     where e.relid = rel
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
    limit greatest(lim, 0))
$$;

-- The current rows of `rel` with the given primary keys (each a jsonb text
-- of the key columns), as the caller sees them: run with the caller's role
-- and claims set, so row-level security and column privileges apply, and
-- only selectable columns are returned. Each row comes with its key, in the
-- same form as herald.changed_rows gives it. The caller must be able to
-- select the primary key: a client that cannot see keys cannot match
-- changes to rows.
create function herald.read_keys(rel regclass, keys text[])
returns table (key text, image jsonb)
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  cols text[] := herald.selectable_columns(rel, current_user);
  pk   text[];
begin
  select array_agg(a.attname::text order by u.ord) into pk
    from pg_index i
   cross join lateral unnest(i.indkey::int2[]) with ordinality u(attnum, ord)
    join pg_attribute a on a.attrelid = i.indrelid and a.attnum = u.attnum
   where i.indrelid = rel and i.indisprimary;
  if cardinality(cols) = 0 then
    raise exception 'permission denied for table %', rel using errcode = '42501';
  end if;
  if pk is null or not pk <@ cols then
    raise exception 'resuming needs SELECT on the primary key of %', rel
      using errcode = '42501';
  end if;
  return query execute format(
    'select (select jsonb_object_agg(k, to_jsonb(herald__r) -> k) from unnest($2) k)::text, '
    '       to_jsonb(herald__r) '
    '  from (select %s from %s t where (%s) in (select %s from jsonb_populate_recordset(null::%s, $1) k)) herald__r',
    (select string_agg(format('t.%I', c), ', ') from unnest(cols) c),
    rel,
    (select string_agg(format('t.%I', c), ', ') from unnest(pk) c),
    (select string_agg(format('k.%I', c), ', ') from unnest(pk) c),
    rel)
  using (select coalesce(jsonb_agg(k::jsonb), '[]') from unnest(keys) k), pk;
end
$$;

revoke all on function herald.changed_rows(oid, text, text, bigint, text, bigint) from public;
grant execute on function herald.changed_rows(oid, text, text, bigint, text, bigint)
  to herald_authenticator;
grant execute on function herald.read_keys(regclass, text[]) to public;
