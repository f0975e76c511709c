-- herald.authorize, V1 regrouped the checks once per context, scanning every
-- check for every context (quadratic in a batch). This version groups them
-- once, in context order, and computes each role's predicate and columns
-- once per table per call.
create or replace function herald.authorize(contexts jsonb, ctx int[], rel oid[], image jsonb[])
returns table (chk int, visible boolean, context int, relid oid, columns text[])
language plpgsql volatile set search_path = pg_catalog as $$
declare
  t       record;
  role    text;
  key     text;
  pred    text;
  cols    text[];
  preds   jsonb := '{}';
  colsets jsonb := '{}';
begin
  for t in
    select u.cx, u.r as relid,
           format('%I.%I', n.nspname, cl.relname) as qualified, cl.relname::text as alias,
           array_agg(u.i::int order by u.i) as idxs, array_agg(u.img order by u.i) as imgs
      from unnest(ctx, rel, image) with ordinality u(cx, r, img, i)
      join pg_class cl on cl.oid = u.r
      join pg_namespace n on n.oid = cl.relnamespace
     group by u.cx, u.r, n.nspname, cl.relname
     order by u.cx, u.r
  loop
    role := contexts -> t.cx ->> 'role';
    perform set_config('role', 'none', true);
    key := role || '/' || t.relid;
    if not preds ? key then
      cols := herald.selectable_columns(t.relid, role);
      pred := case when cardinality(cols) = 0 then 'false'
                   else coalesce(herald.visibility_predicate(t.relid, role), 'false') end;
      preds := preds || jsonb_build_object(key, pred);
      colsets := colsets || jsonb_build_object(key, to_jsonb(cols));
    end if;
    pred := preds ->> key;
    cols := array(select jsonb_array_elements_text(colsets -> key));
    return query select null::int, null::boolean, t.cx, t.relid, cols;
    perform set_config('role', role, true);
    perform set_config('request.jwt.claims', coalesce(contexts -> t.cx -> 'claims', '{}')::text, true);
    begin
      return query execute format(
        'select herald__u.herald__i, coalesce((%s), false), null::int, null::oid, null::text[] '
        'from unnest($1::int[], $2::jsonb[]) as herald__u(herald__i, herald__img) '
        'cross join lateral jsonb_populate_record(null::%s, herald__u.herald__img) as %I',
        pred, t.qualified, t.alias)
        using t.idxs, t.imgs;
    exception when others then
      -- A policy that errors for this context (say, a claim that does not
      -- cast) hides the rows, as the error would in a real SELECT.
      raise warning 'herald.authorize: policy of % failed for role %: %', t.qualified, role, sqlerrm;
      return query select i, false, null::int, null::oid, null::text[] from unnest(t.idxs) i;
    end;
  end loop;
  perform set_config('role', 'none', true);
  perform set_config('request.jwt.claims', '', true);
end
$$;
