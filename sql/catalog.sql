-- The tracked tables and their columns, one row per column, for the GraphQL
-- schema and filters (src/db/catalog.rs). Domains are resolved to their base
-- type; arrays report their element type; enums their labels in sort order.
-- Names and keys come from the live catalog, so renames show up at once.
with recursive cols as (
  select t.relid, n.nspname::text as schema_name, c.relname::text as table_name,
         format('%I.%I', n.nspname, c.relname) as qualified,
         array(select a.attname::text
                 from pg_index i
                 cross join lateral unnest(i.indkey::int2[]) with ordinality k(attnum, ord)
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                where i.indrelid = t.relid and i.indisprimary
                order by k.ord) as pk_columns,
         a.attnum, a.attname::text as column_name, a.attnotnull as not_null,
         format_type(a.atttypid, a.atttypmod) as sql_type,
         a.atttypid as typid
    from herald.tracked t
    join pg_class c on c.oid = t.relid
    join pg_namespace n on n.oid = c.relnamespace
    join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped
),
-- Follow domains down to their base type.
base(relid, attnum, typid, depth) as (
  select relid, attnum, typid, 0 from cols
  union all
  select b.relid, b.attnum, ty.typbasetype, b.depth + 1
    from base b join pg_type ty on ty.oid = b.typid
   where ty.typtype = 'd'
),
resolved as (
  select distinct on (b.relid, b.attnum) b.relid, b.attnum, b.typid
    from base b order by b.relid, b.attnum, b.depth desc
)
select c.relid, c.schema_name, c.table_name, c.qualified, c.pk_columns,
       c.column_name, c.not_null, c.sql_type,
       ty.typname::text as base_type,
       case when ty.typcategory = 'A' then el.typname::text end as elem_type,
       case when scalar.typtype = 'e'
            then format('%I.%I', en.nspname, scalar.typname) end as enum_name,
       case when scalar.typtype = 'e'
            then array(select e.enumlabel::text from pg_enum e
                        where e.enumtypid = scalar.oid order by e.enumsortorder) end as enum_labels
  from cols c
  join resolved r on r.relid = c.relid and r.attnum = c.attnum
  join pg_type ty on ty.oid = r.typid
  left join pg_type el on el.oid = ty.typelem and ty.typcategory = 'A'
  join pg_type scalar on scalar.oid = coalesce(el.oid, ty.oid)
  join pg_namespace en on en.oid = scalar.typnamespace
 order by c.schema_name, c.table_name, c.relid, c.attnum
