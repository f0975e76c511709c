-- The key cursors are signed with (HMAC-SHA256), shared by every instance
-- through the database: an edited cursor is refused instead of replaying
-- whatever it names. Random (gen_random_uuid draws from a strong source),
-- readable only by the login role, through this function.
alter table herald.meta
  add column cursor_key text not null
  default replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');

create function herald.cursor_key() returns text
language sql stable security definer set search_path = pg_catalog, pg_temp as $$
  select cursor_key from herald.meta
$$;

revoke all on function herald.cursor_key() from public;
grant execute on function herald.cursor_key() to herald_authenticator;
