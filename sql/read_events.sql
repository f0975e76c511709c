-- Events committed after snapshot $1 and visible in snapshot $2, after outbox
-- id $3, in id order, at most $4. The xid range lets the index on xid bound the
-- scan; the visibility tests pick exactly the transactions between the two.
select id,
       xid::text::bigint as xid,
       relid,
       table_name,
       op,
       new_row,
       old_row,
       committed_at
  from herald.events
 where xid >= pg_snapshot_xmin($1::text::pg_snapshot)
   and xid < pg_snapshot_xmax($2::text::pg_snapshot)
   and pg_visible_in_snapshot(xid, $2::text::pg_snapshot)
   and not pg_visible_in_snapshot(xid, $1::text::pg_snapshot)
   and id > $3
 order by id
 limit $4
