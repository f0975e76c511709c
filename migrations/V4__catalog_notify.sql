-- Every instance rebuilds its GraphQL schema when the tracked tables change:
-- tracking and untracking (rows of herald.tracked) and DDL (ALTER, DROP,
-- RENAME of a table or column) notify the channel herald_catalog. Instances
-- also compare the catalog every few seconds, for databases where the
-- migrating role may not create event triggers (they need a superuser).
create function herald.notify_catalog() returns trigger
language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  perform pg_notify('herald_catalog', '');
  return null;
end
$$;

create trigger tracked_changed
  after insert or update or delete on herald.tracked
  for each statement execute function herald.notify_catalog();

-- DDL: notify, and forget tracked tables that were dropped.
create function herald.on_ddl() returns event_trigger
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if tg_event = 'sql_drop' then
    delete from herald.tracked t
     using pg_event_trigger_dropped_objects() d
     where d.objid = t.relid and d.classid = 'pg_class'::regclass and d.objsubid = 0;
  end if;
  perform pg_notify('herald_catalog', '');
end
$$;

do $$
begin
  create event trigger herald_ddl on ddl_command_end execute function herald.on_ddl();
  create event trigger herald_drop on sql_drop execute function herald.on_ddl();
exception when insufficient_privilege then
  raise notice 'pgherald: no event triggers (need a superuser); DDL on tracked tables is picked up by polling';
end
$$;
