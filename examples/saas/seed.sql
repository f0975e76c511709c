-- Demo data for `make run`: two tenants, four users, notifications and
-- documents. Idempotent: fixed ids, on conflict do nothing.
insert into public.tenants (id, name) values
  ('10000000-0000-4000-8000-000000000001', 'Acme'),
  ('10000000-0000-4000-8000-000000000002', 'Globex')
on conflict do nothing;

insert into public.users (id, email, display_name) values
  ('20000000-0000-4000-8000-000000000001', 'alice@acme.test', 'Alice'),
  ('20000000-0000-4000-8000-000000000002', 'bob@acme.test', 'Bob'),
  ('20000000-0000-4000-8000-000000000003', 'carol@globex.test', 'Carol'),
  ('20000000-0000-4000-8000-000000000004', 'dave@both.test', 'Dave')
on conflict do nothing;

insert into public.memberships (tenant_id, user_id, role) values
  ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000001', 'owner'),
  ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000002', 'member'),
  ('10000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000003', 'owner'),
  ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000004', 'member'),
  ('10000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000004', 'member')
on conflict do nothing;

insert into public.notifications (id, tenant_id, user_id, kind, title, body) values
  ('30000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001',
   '20000000-0000-4000-8000-000000000001', 'welcome', 'Welcome to Acme', 'Say hi to Bob.'),
  ('30000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001',
   '20000000-0000-4000-8000-000000000002', 'welcome', 'Welcome to Acme', 'Say hi to Alice.'),
  ('30000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000002',
   '20000000-0000-4000-8000-000000000003', 'welcome', 'Welcome to Globex', null)
on conflict do nothing;

insert into public.documents (id, tenant_id, title, body) values
  ('40000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001',
   'Acme roadmap', 'Q1: ship realtime.'),
  ('40000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002',
   'Globex plans', 'Confidential.')
on conflict do nothing;
