-- The first page of a batch, read inside the transaction that holds its end
-- (src/events/moments.rs), in the same round trip as the hold: the events
-- committed after snapshot $1 and visible in this transaction's own
-- snapshot, at most $2, in id order. The same function as
-- sql/read_events.sql, so the two cannot disagree.
select id, xid, relid, table_name, op, new_row, old_row, committed_at
  from herald.read_events($1, pg_catalog.pg_current_snapshot()::text, 0, $2)
