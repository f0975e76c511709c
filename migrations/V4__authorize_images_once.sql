-- herald.authorize with each row image sent once: checks refer to images by
-- index, so a batch seen by C contexts no longer ships and copies every image
-- C times (measured: 100 contexts x 1000 events held 560 MB in the backend).
--   contexts: [{"role": "...", "claims": {...}}, ...]
--   check i: may contexts[ctx[i]] see images[img[i]] (1-based), a row of table rel[i]?
-- Returns (chk, visible) rows for checks and (context, relid, columns) rows per table.
drop function herald.authorize(jsonb, int[], oid[], jsonb[]);

create function herald.authorize(contexts jsonb, ctx int[], rel oid[], img int[], images jsonb[])
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
           array_agg(u.i::int order by u.i) as idxs, array_agg(u.im order by u.i) as ims
      from unnest(ctx, rel, img) with ordinality u(cx, r, im, i)
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
        'from unnest($1::int[], $2::int[]) as herald__u(herald__i, herald__im) '
        'join unnest($3::jsonb[]) with ordinality as herald__x(herald__img, herald__n) '
        '  on herald__x.herald__n = herald__u.herald__im '
        'cross join lateral jsonb_populate_record(null::%s, herald__x.herald__img) as %I',
        pred, t.qualified, t.alias)
        using t.idxs, t.ims, images;
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

revoke all on function herald.authorize(jsonb, int[], oid[], int[], jsonb[]) from public;
grant execute on function herald.authorize(jsonb, int[], oid[], int[], jsonb[]) to herald_authenticator;
