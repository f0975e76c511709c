-- /metrics: the outbox's size, and the age of the oldest event the listener
-- has not read. Sizes are read from the catalogs (no privilege on the outbox
-- needed, nothing scanned); the oldest unread event through
-- herald.read_events (the login role's only way into the outbox), from the
-- listener's position $1 (null: no lag reported) to now, one row.
select
  (select coalesce(sum(pg_catalog.pg_total_relation_size(i.inhrelid)), 0)::bigint
     from pg_catalog.pg_inherits i
    where i.inhparent = 'herald.events'::pg_catalog.regclass) as bytes,
  (select coalesce(sum(greatest(c.reltuples, 0)), 0)::float8
     from pg_catalog.pg_inherits i
     join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = 'herald.events'::pg_catalog.regclass) as rows,
  case when $1::text is not null then
    coalesce((select extract(epoch from pg_catalog.clock_timestamp() - e.committed_at)::float8
                from herald.read_events($1, pg_catalog.pg_current_snapshot()::text, 0, 1) e), 0)
  end as lag
