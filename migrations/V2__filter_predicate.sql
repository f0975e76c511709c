-- Row filters in SQL: the twin of src/events/filter/, built to decide
-- exactly as Filter::matches does on row images (the semantics are
-- documented there). The server passes a spec it has already validated
-- (Filter::spec); bad input still raises a clear error here, and nothing of
-- the spec reaches SQL except through %I (identifiers, checked against
-- pg_attribute) and %L (values, cast and checked before they are used).
--
--   herald.filter_predicate('public.documents', '{"title": {"like": "a%"}}')
--     => ("title"::text collate "C") like 'a%'::text
--
-- The predicate refers to the table's columns unqualified: use it as
-- `select ... from tbl where <predicate>` (or over a record of the table's
-- row type, as herald.filter_matches does).

-- How filters treat a (non-array, domain-resolved) type; the same mapping as
-- src/db/catalog.rs.
create function herald.filter_kind(typ oid) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
  select case
    when t.typtype = 'e' then 'enum'
    when t.typname in ('int2', 'int4', 'int8', 'numeric') then 'number'
    when t.typname in ('float4', 'float8') then 'float'
    when t.typname = 'bool' then 'bool'
    when t.typname in ('text', 'varchar', 'bpchar', 'name', 'citext') then 'text'
    when t.typname in ('uuid', 'timestamptz', 'timestamp', 'date') then t.typname::text
    when t.typname in ('json', 'jsonb') then 'json'
    else 'other'
  end
  from pg_type t where t.oid = typ
$$;

-- The type values of `kind` are compared in: numbers as exact numeric,
-- text kinds and other types as text, json as jsonb, the rest as their own
-- type (without typmod: no rounding or truncation of the filter value).
create function herald.filter_type(kind text, typ oid) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
  select case kind
    when 'number' then 'numeric'
    when 'bool' then 'boolean'
    when 'text' then 'text'
    when 'other' then 'text'
    when 'json' then 'jsonb'
    else format_type(typ, null)
  end
$$;

-- One filter value as a typed SQL literal, for column `col` (messages
-- only) of `kind` and type `typ`. Integer literals for integer columns are
-- int8, so that indexes apply; other numbers are numeric. char(n) values
-- lose trailing spaces, as the column's text form does.
create function herald.filter_literal(col text, v jsonb, kind text, typ oid) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  txt text;
  lit text;
begin
  if v is null or jsonb_typeof(v) = 'null' then
    raise exception using errcode = '22023', message = format(
      'null is not a filter value for column %s; use {"isNull": true} to match NULLs', to_json(col));
  end if;
  if kind = 'json' then
    txt := v::text;
  elsif jsonb_typeof(v) in ('object', 'array') then
    raise exception using errcode = '22023', message = format(
      'invalid filter value for column %s (%s): %s', to_json(col), format_type(typ, null), v);
  else
    txt := v #>> '{}';
  end if;
  lit := case
    when kind = 'number' and typ in ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) then
      case when txt ~ '^[+-]?[0-9]{1,19}$' then
        case when txt::numeric between -9223372036854775808 and 9223372036854775807
             then format('%L::int8', txt) end
      end
    when kind = 'text' and typ = 'bpchar'::regtype then format('rtrim(%L, '' '')', txt)
  end;
  lit := coalesce(lit, format('%L::%s', txt, herald.filter_type(kind, typ)));
  begin
    -- Fail now, naming the column, rather than when the predicate runs.
    execute 'select ' || lit;
  exception when others then
    raise exception using errcode = '22023', message = format(
      'invalid filter value for column %s (%s): %s', to_json(col), format_type(typ, null), sqlerrm);
  end;
  return lit;
end
$$;

-- A filter value for an array column: a typed array literal.
create function herald.filter_array(col text, v jsonb, kind text, elem oid) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  items text;
begin
  if jsonb_typeof(v) is distinct from 'array' then
    raise exception using errcode = '22023', message = format(
      'invalid filter value for column %s (%s[]): expected a list, got %s',
      to_json(col), format_type(elem, null), coalesce(v::text, 'null'));
  end if;
  select string_agg(case when jsonb_typeof(e.v) = 'null'
                         then format('null::%s', herald.filter_type(kind, elem))
                         else herald.filter_literal(col, e.v, kind, elem) end,
                    ', ' order by e.n)
    into items
    from jsonb_array_elements(v) with ordinality e(v, n);
  return format('array[%s]::%s[]', coalesce(items, ''), herald.filter_type(kind, elem));
end
$$;

-- The predicate of one column's operators (ANDed).
create function herald.filter_column(rel regclass, col text, ops jsonb) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  typ     oid;      -- the column's type, domains resolved
  elem    oid;      -- its element type, for an array
  kind    text;     -- filter_kind of the scalar type
  lhs     text;     -- the column as compared
  ordered boolean;  -- lt/lte/gt/gte apply
  op      text;
  val     jsonb;
  pattern text;
  items   text[];
  parts   text[] := '{}';
begin
  select a.atttypid into typ
    from pg_attribute a
   where a.attrelid = rel and a.attname = col and a.attnum > 0 and not a.attisdropped;
  if not found then
    raise exception using errcode = '42703', message = format(
      'unknown column %s in filter for table %s', to_json(col), rel);
  end if;
  while (select t.typtype = 'd' from pg_type t where t.oid = typ) loop
    typ := (select t.typbasetype from pg_type t where t.oid = typ);
  end loop;
  if (select t.typcategory = 'A' from pg_type t where t.oid = typ) then
    elem := (select t.typelem from pg_type t where t.oid = typ);
    kind := herald.filter_kind(elem);
    lhs := format('%I::%s[]', col, herald.filter_type(kind, elem));
  else
    kind := herald.filter_kind(typ);
    lhs := case kind
      -- Code point order, on the text form (char(n) without trailing spaces).
      when 'text' then format('(%I::text collate "C")', col)
      when 'other' then format('(%I::text collate "C")', col)
      -- A JSON null is NULL, as in row images.
      when 'json' then format('nullif(%I::jsonb, ''null''::jsonb)', col)
      else format('%I', col)
    end;
  end if;
  ordered := elem is null and kind not in ('json', 'other');
  if jsonb_typeof(ops) is distinct from 'object' then
    raise exception using errcode = '22023', message = format(
      'column %s in filter needs an object of operators, like {"eq": value}', to_json(col));
  end if;
  for op, val in select e.key, e.value from jsonb_each(ops) e loop
    if op = 'isNull' then
      if jsonb_typeof(val) is distinct from 'boolean' then
        raise exception using errcode = '22023', message = format(
          'isNull on column %s needs true or false', to_json(col));
      end if;
      parts := parts || format('(%s is %snull)', lhs, case when val::boolean then '' else 'not ' end);
    elsif op in ('eq', 'neq') or (op in ('lt', 'lte', 'gt', 'gte') and ordered) then
      parts := parts || format('(%s %s %s)', lhs,
        case op when 'eq' then '=' when 'neq' then '<>' when 'lt' then '<'
                when 'lte' then '<=' when 'gt' then '>' else '>=' end,
        case when elem is null then herald.filter_literal(col, val, kind, typ)
             else herald.filter_array(col, val, kind, elem) end);
    elsif op = 'in' and elem is null then
      if jsonb_typeof(val) is distinct from 'array' then
        raise exception using errcode = '22023', message = format(
          'filter operator "in" on column %s needs a list', to_json(col));
      end if;
      select array_agg(herald.filter_literal(col, e.v, kind, typ) order by e.n)
        into items
        from jsonb_array_elements(val) with ordinality e(v, n);
      -- `x = any('{}')` is false, even for a NULL x.
      parts := parts || case when items is null then 'false'
                             else format('(%s = any(array[%s]))', lhs, array_to_string(items, ', ')) end;
    elsif op in ('like', 'ilike') and kind = 'text' and elem is null then
      if jsonb_typeof(val) is distinct from 'string' then
        raise exception using errcode = '22023', message = format(
          'invalid filter value for column %s: expected a pattern string, got %s', to_json(col), val);
      end if;
      pattern := val #>> '{}';
      if (length(pattern) - length(rtrim(pattern, '\'))) % 2 = 1 then
        raise exception using errcode = '22023', message = format(
          'invalid filter value for column %s: pattern %s ends with an escape character',
          to_json(col), val);
      end if;
      -- Under COLLATE "C", ilike folds ASCII letters only.
      parts := parts || format('(%s %s %L::text)', lhs, op, pattern);
    elsif op in ('eq', 'neq', 'lt', 'lte', 'gt', 'gte', 'in', 'isNull', 'like', 'ilike') then
      raise exception using errcode = '22023', message = format(
        'filter operator %s does not apply to column %s of type %s',
        to_json(op), to_json(col), format_type(coalesce(elem, typ), null) || case when elem is null then '' else '[]' end);
    else
      raise exception using errcode = '22023', message = format(
        'unknown filter operator %s on column %s (expected eq, neq, lt, lte, gt, gte, in, isNull, like or ilike)',
        to_json(op), to_json(col));
    end if;
  end loop;
  return case cardinality(parts)
    when 0 then 'true'
    when 1 then parts[1]
    else '(' || array_to_string(parts, ' and ') || ')'
  end;
end
$$;

-- The SQL predicate of filter `spec` on table `rel`: keys ANDed, `_and`,
-- `_or`, `_not` and column operators; '{}' gives 'true'. SQL's three-valued
-- logic applies as is: a row matches when the predicate is true.
create function herald.filter_predicate(rel regclass, spec jsonb) returns text
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  parts text[] := '{}';
  key   text;
  val   jsonb;
  items text[];
begin
  if rel is null or jsonb_typeof(spec) is distinct from 'object' then
    raise exception using errcode = '22023', message =
      'filter must be an object like {"column": {"eq": value}}, optionally with _and, _or and _not';
  end if;
  for key, val in select e.key, e.value from jsonb_each(spec) e loop
    if key in ('_and', '_or') then
      if jsonb_typeof(val) is distinct from 'array' then
        raise exception using errcode = '22023', message = format(
          '%s needs a list of filter objects', key);
      end if;
      select array_agg(herald.filter_predicate(rel, e.v) order by e.n)
        into items
        from jsonb_array_elements(val) with ordinality e(v, n);
      parts := parts || coalesce(
        '(' || array_to_string(items, case key when '_and' then ' and ' else ' or ' end) || ')',
        case key when '_and' then 'true' else 'false' end);
    elsif key = '_not' then
      parts := parts || ('(not ' || herald.filter_predicate(rel, val) || ')');
    else
      parts := parts || herald.filter_column(rel, key, val);
    end if;
  end loop;
  return case cardinality(parts)
    when 0 then 'true'
    when 1 then parts[1]
    else '(' || array_to_string(parts, ' and ') || ')'
  end;
end
$$;

-- Whether a row image (to_jsonb of a row of `rel`) satisfies `spec`, by the
-- SQL predicate: for tests and for checking the twin against the Rust side.
create function herald.filter_matches(rel regclass, spec jsonb, image jsonb) returns boolean
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  result boolean;
begin
  execute format('select %s from jsonb_populate_record(null::%s, $1) as herald__row',
                 herald.filter_predicate(rel, spec), rel)
     into result using image;
  return coalesce(result, false);
end
$$;

-- They only build text (and evaluate it on a record the caller supplies).
grant execute on function
  herald.filter_kind(oid), herald.filter_type(text, oid),
  herald.filter_literal(text, jsonb, text, oid), herald.filter_array(text, jsonb, text, oid),
  herald.filter_column(regclass, text, jsonb), herald.filter_predicate(regclass, jsonb),
  herald.filter_matches(regclass, jsonb, jsonb)
  to public;
