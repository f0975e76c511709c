-- Events committed after snapshot $1 and visible in snapshot $2, after outbox
-- id $3, in id order, at most $4: through herald.read_events, the only way
-- the login role may read the outbox (migrations/V1).
select id, xid, relid, table_name, op, new_row, old_row, committed_at
  from herald.read_events($1, $2, $3, $4)
