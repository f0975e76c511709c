-- The demo page lets a user send a notification to a colleague (POST /demo,
-- src/demo.rs). V1 gives callers no way to create notifications; this lets
-- a member of a tenant notify a member of the same tenant (themselves
-- included), as a `message` that names its sender. Nothing else changes:
-- only the recipient reads a notification (V1's select policy), so the sender
-- does not see it after sending.
create policy notifications_colleague_insert on public.notifications for insert
  with check (
    tenant_id in (select public.my_tenant_ids())
    and user_id in (select m.user_id from public.memberships m
                     where m.tenant_id = notifications.tenant_id)
    -- System kinds (welcome, ...) stay the application's own; the sender
    -- recorded is the caller, not whoever the client claims.
    and kind = 'message'
    and data ->> 'from' = public.current_user_id()::text
  );

grant insert (tenant_id, user_id, kind, title, body, data) on public.notifications to app_user;
