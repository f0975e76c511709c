-- The demo SaaS schema: tenants, users, memberships, notifications, documents.
-- Installed only by `pgherald migrate --demo` (after pgherald's own schema,
-- whose herald.track it calls); history in herald.demo_schema_history.
create table public.tenants (
  id   uuid primary key default gen_random_uuid(),
  name text not null
);

create table public.users (
  id           uuid primary key default gen_random_uuid(),
  email        text not null unique,
  display_name text
);

create table public.memberships (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id   uuid not null references public.users (id) on delete cascade,
  role      text not null default 'member',
  primary key (tenant_id, user_id)
);
create index memberships_user on public.memberships (user_id);

create table public.notifications (
  id         uuid primary key default gen_random_uuid(),
  tenant_id  uuid not null references public.tenants (id) on delete cascade,
  user_id    uuid not null references public.users (id) on delete cascade,
  kind       text not null default 'info',
  title      text not null,
  body       text,
  data       jsonb not null default '{}',
  created_at timestamptz not null default now(),
  read_at    timestamptz
);
create index notifications_user on public.notifications (user_id, created_at desc);

create table public.documents (
  id         uuid primary key default gen_random_uuid(),
  tenant_id  uuid not null references public.tenants (id) on delete cascade,
  title      text not null,
  body       text not null default '',
  updated_at timestamptz not null default now()
);
create index documents_tenant on public.documents (tenant_id);

-- The caller's user id, from the JWT claims (PostgREST convention); null for
-- callers without a usable `sub`.
create function public.current_user_id() returns uuid
language sql stable as $$
  select case
    when (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')
         ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
    then (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')::uuid
  end
$$;

-- Tenants the caller belongs to. SECURITY DEFINER so that the memberships
-- policy can use it without recursing into itself.
create function public.my_tenant_ids() returns setof uuid
language sql stable security definer set search_path = pg_catalog, public as $$
  select m.tenant_id from public.memberships m where m.user_id = public.current_user_id()
$$;

alter table public.tenants enable row level security;
alter table public.users enable row level security;
alter table public.memberships enable row level security;
alter table public.notifications enable row level security;
alter table public.documents enable row level security;

create policy tenants_members on public.tenants for select
  using (id in (select public.my_tenant_ids()));

create policy users_self_or_colleague on public.users for select
  using (id = public.current_user_id()
         or id in (select m.user_id from public.memberships m
                    where m.tenant_id in (select public.my_tenant_ids())));

create policy memberships_of_my_tenants on public.memberships for select
  using (tenant_id in (select public.my_tenant_ids()));

create policy notifications_recipient on public.notifications for select
  using (user_id = public.current_user_id());
create policy notifications_recipient_update on public.notifications for update
  using (user_id = public.current_user_id())
  with check (user_id = public.current_user_id());

create policy documents_members on public.documents for all
  using (tenant_id in (select public.my_tenant_ids()))
  with check (tenant_id in (select public.my_tenant_ids()));

grant usage on schema public to app_user;
grant select on public.tenants, public.users, public.memberships to app_user;
grant select, update (read_at) on public.notifications to app_user;
grant select, insert, update, delete on public.documents to app_user;
grant execute on function public.current_user_id(), public.my_tenant_ids() to app_user;

select herald.track('public.tenants');
select herald.track('public.users');
select herald.track('public.memberships');
select herald.track('public.notifications');
select herald.track('public.documents');
