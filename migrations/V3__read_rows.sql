-- Reading a tracked table's rows for the generated GraphQL queries and the
-- `initial` read of subscriptions. Runs with the caller's role and claims
-- already set (transaction-locally), so row-level security and column
-- privileges apply; only columns the role may select are read or returned.
--   filter:   a filter validated by the server (herald.filter_predicate)
--   order_by: [{"column": "...", "direction": "ASC"|"DESC"}, ...]; the primary
--             key is appended (ascending) so the order is total
--   after:    the sort key of the last row of the previous page
-- Returns each row (selectable columns only) and its sort key.
create function herald.read_rows(rel regclass, filter jsonb, order_by jsonb, lim int, after jsonb)
returns table (image jsonb, sort_key jsonb)
language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  cols    text[] := herald.selectable_columns(rel, current_user);
  keys    text[] := '{}';
  dirs    text[] := '{}';
  types   text[] := '{}';
  item    jsonb;
  k       text;
  d       text;
  v       jsonb;
  lit     text;
  prefix  text := '';
  later   text := 'false';
  ordering text;
begin
  if cardinality(cols) = 0 then
    raise exception 'permission denied for table %', rel using errcode = '42501';
  end if;
  for item in select e from jsonb_array_elements(coalesce(order_by, '[]')) e loop
    k := item ->> 'column';
    d := upper(coalesce(item ->> 'direction', 'ASC'));
    if k is null or not k = any(cols) then
      raise exception 'orderBy: unknown column %', coalesce(k, 'null') using errcode = '42703';
    end if;
    if d not in ('ASC', 'DESC') then
      raise exception 'orderBy: direction must be ASC or DESC' using errcode = '22023';
    end if;
    if not k = any(keys) then
      keys := keys || k;
      dirs := dirs || d;
    end if;
  end loop;
  for k in select a.attname::text
             from pg_index i
             cross join lateral unnest(i.indkey::int2[]) with ordinality u(attnum, ord)
             join pg_attribute a on a.attrelid = i.indrelid and a.attnum = u.attnum
            where i.indrelid = rel and i.indisprimary
            order by u.ord loop
    if not k = any(keys) and k = any(cols) then
      keys := keys || k;
      dirs := dirs || 'ASC'::text;
    end if;
  end loop;
  select array_agg(format_type(a.atttypid, a.atttypmod) order by u.n) into types
    from unnest(keys) with ordinality u(col, n)
    join pg_attribute a on a.attrelid = rel and a.attname = u.col;

  if after is not null then
    if jsonb_typeof(after) <> 'array' or jsonb_array_length(after) <> cardinality(keys) then
      raise exception 'after: this cursor belongs to another orderBy' using errcode = '22023';
    end if;
    -- Rows after the key, in the order `ORDER BY k1 d1, k2 d2, ...` with
    -- ascending nulls last and descending nulls first: equal on a prefix of
    -- the key and later on the next column.
    for i in 1 .. cardinality(keys) loop
      v := after -> (i - 1);
      lit := case when jsonb_typeof(v) = 'null' then null else v #>> '{}' end;
      later := later || ' or (' || prefix || case
        when dirs[i] = 'ASC' and lit is null then 'false'
        when dirs[i] = 'ASC' then format('(%I > %L::%s or %I is null)', keys[i], lit, types[i], keys[i])
        when lit is null then format('%I is not null', keys[i])
        else format('%I < %L::%s', keys[i], lit, types[i])
      end || ')';
      prefix := prefix || case
        when lit is null then format('%I is null and ', keys[i])
        else format('%I = %L::%s and ', keys[i], lit, types[i])
      end;
    end loop;
  else
    later := 'true';
  end if;

  select string_agg(format('%I %s nulls %s', u.col, u.dir,
                           case u.dir when 'ASC' then 'last' else 'first' end), ', ' order by u.n)
    into ordering
    from unnest(keys, dirs) with ordinality u(col, dir, n);

  return query execute format(
    'select to_jsonb(herald__r), jsonb_build_array(%s) from (select %s from %s) herald__r '
    'where (%s) and (%s) order by %s limit %s',
    (select string_agg(format('herald__r.%I', c), ', ') from unnest(keys) c),
    (select string_agg(format('%I', c), ', ') from unnest(cols) c),
    rel,
    case when filter is null or filter = '{}'::jsonb then 'true'
         else herald.filter_predicate(rel, filter) end,
    later,
    coalesce(ordering, 'true'),
    greatest(lim, 0));
end
$$;

grant execute on function herald.read_rows(regclass, jsonb, jsonb, int, jsonb) to public;

-- Any role a token names runs these as itself; none of them reveals data.
grant usage on schema herald to public;
grant execute on function herald.selectable_columns(oid, name) to public;
