{#
  What a partition run can change. A session is touched when any of its visit, page, action,
  custom_event, pvar or vstr rows is in the window; in a full build every session is.
#}
{% macro session_tables() -%}
  {{ return(['visit', 'page', 'action', 'custom_event', 'pvar', 'vstr']) }}
{%- endmacro %}

{#
  A model that calls touched_sessions() names this at its top: dbt learns its sources at parse time,
  when the partition-run branch that reads them is not rendered.
#}
{% macro depends_on_touched_sources() -%}
  {%- for name in session_tables() %}
-- depends_on: {{ source('growingio', name) }}
  {%- endfor %}
{%- endmacro %}

{# The same, for a model that finds its touched sessions through the session index. #}
{% macro depends_on_session_index() -%}
{{ depends_on_touched_sources() }}
-- depends_on: {{ ref('session_hours') }}
{%- endmacro %}

{#
  In a partition run, keeps the touched sessions from the session index for the run's models
  (indexed_touched_sessions). Each model that reads them calls this at its top, before it writes to the lake.
#}
{% macro keep_touched_sessions() -%}
  {%- if is_partition_run() and session_index_exists() -%}
    {%- do run_table('touched_sessions',
          'select distinct visit_user_id, session_id from ' ~ ref('session_hours') ~ ' where ' ~ in_window()) -%}
  {%- endif -%}
{%- endmacro %}

{#
  A table of this dbt process, in its in-memory database, holding `query`'s rows: the first model that asks with
  a query makes it, and the run's other models read it. A partition run is one dbt process with one window (and
  one model at a time: profiles.yml), and every read of a lake table first reads the lake's catalog (its file
  statistics), so the models share one result instead of each reading the lake again. A DuckDB transaction
  writes to one database only: ask with a query before the model writes to the lake.
#}
{% macro run_table(name, query=none) -%}
  {%- if query is not none -%}
    {%- do run_query('create table if not exists memory.main.' ~ name ~ ' as ' ~ query) -%}
  {%- endif -%}
  {{ return('memory.main.' ~ name) }}
{%- endmacro %}

{#
  The rows of the touched sessions, as a filter: what a model keyed by session or page view rebuilds (every row
  in a full build). The touched sessions include those whose rows a reload removed from the window's hours.
#}
{% macro touched_session_rows() -%}
  {%- if is_partition_run() -%}
  (visit_user_id, session_id) in (select visit_user_id, session_id from ({{ run_touched_sessions() }}))
  {%- else -%}
  true
  {%- endif -%}
{%- endmacro %}

{# The rows of the touched visitors, as a filter (every row in a full build). #}
{% macro touched_visitor_rows() -%}
  {%- if is_partition_run() -%}
  visit_user_id in ({{ touched_visitors() }})
  {%- else -%}
  true
  {%- endif -%}
{%- endmacro %}

{# The touched sessions: from the session index when the lake has one, else from the raw tables. #}
{% macro run_touched_sessions() -%}
  {{ indexed_touched_sessions() if session_index_exists() else touched_sessions() }}
{%- endmacro %}

{% macro touched_sessions() -%}
  select distinct visit_user_id, session_id from ({{ session_rows_in_window('visit_user_id, session_id') }})
{%- endmacro %}

{# `columns` of the window's rows in every session table. #}
{% macro session_rows_in_window(columns) -%}
  {%- for name in session_tables() %}
  select {{ columns }} from {{ source('growingio', name) }} where {{ in_window() }}
  {%- if not loop.last %} union all{% endif %}
  {%- endfor %}
{%- endmacro %}

{#
  The same sessions from the session index, which this run has just rebuilt for its hours: one small scan
  instead of six, made once per run (keep_touched_sessions). It also names the sessions whose rows a reload
  removed from these hours (departed), so that the run rebuilds or deletes them. Should a reload land after
  that, its own partition run, which starts after this one ends, rebuilds what it changed.
#}
{% macro indexed_touched_sessions() -%}
  select visit_user_id, session_id from {{ run_table('touched_sessions') }}
{%- endmacro %}

{# Whether the session index exists: a lake made before it has none until the index's first run. #}
{% macro session_index_exists() -%}
  {%- set index = ref('session_hours') -%}
  {{ return(execute and adapter.get_relation(index.database, index.schema, index.identifier) is not none) }}
{%- endmacro %}

{#
  The export hours a partition run reads its touched sessions' rows from: those where the session index
  (models/session_hours.sql) places a touched session, and every hour of the window whose index entries are
  missing or were built from other raw rows than the hour holds now. None in a full build, or when the
  index does not exist yet: the run then reads the whole window. Computed once per run (run_table).
#}
{% macro session_hours_to_read() -%}
  {%- if not (is_partition_run() and session_index_exists()) -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set index = ref('session_hours') -%}
  {%- set cap = var('session_cap_days') -%}
  {%- set hours_query -%}
    with raw_hours as ({{ raw_hour_fingerprints(near_window(cap)) }}),
    indexed as (select distinct _partition_key, raw_fingerprint from {{ index }} where {{ near_window(cap) }}),
    current_hours as (select _partition_key from raw_hours join indexed using (_partition_key, raw_fingerprint))
    select i._partition_key from {{ index }} i
    semi join ({{ indexed_touched_sessions() }}) t using (visit_user_id, session_id)
    where {{ near_window(cap, 'i._partition_key') }} and i._partition_key in (select _partition_key from current_hours)
      and i.departed is not true
    union
    select _partition_key from raw_hours where _partition_key not in (select _partition_key from current_hours)
  {%- endset -%}
  {%- set hours = run_table('session_hours_to_read', hours_query) -%}
  {{ return(run_query('select _partition_key from ' ~ hours).columns[0].values() | sort) }}
{%- endmacro %}

{#
  A fingerprint of each export hour's rows in the session tables (raw_fingerprint), for the hours `where`
  keeps: per table, the rows the hour holds and the first and last DuckLake row id of its data files.
  DuckLake gives every inserted row a new row id and keeps row ids when maintenance merges files, so a reload
  or any delete changes the fingerprint and a merge does not (a file without a row-id range in the catalog
  adds its name). The files are those of the transaction's snapshot (ducklake_list_files), the one the same
  query reads rows from; a file's row ids and counts in the catalog never change.
#}
{% macro raw_hour_fingerprints(where) -%}
  {%- set catalog = '__ducklake_metadata_' ~ source('growingio', 'visit').database -%}
  select _partition_key, md5(string_agg(table_rows, ',' order by table_rows)) as raw_fingerprint
  from (
    select f._partition_key,
           concat_ws(':', f.table_name, sum(d.record_count - coalesce(x.delete_count, 0)), min(d.row_id_start),
                     max(d.row_id_start + d.record_count),
                     string_agg(f.data_file, ';' order by f.data_file) filter (where d.row_id_start is null)) as table_rows
    from (
      {%- for name in session_tables() %}
      {%- set relation = source('growingio', name) %}
      select '{{ name }}' as table_name, regexp_extract(data_file, '_partition_key=([0-9]+)/', 1) as _partition_key,
             data_file, delete_file
      from ducklake_list_files('{{ relation.database }}', '{{ relation.identifier }}', schema => '{{ relation.schema }}')
      {%- if not loop.last %} union all{% endif %}
      {%- endfor %}
    ) f
    left join {{ catalog }}.ducklake_data_file d on parse_filename(d.path) = parse_filename(f.data_file)
    left join {{ catalog }}.ducklake_delete_file x on parse_filename(x.path) = parse_filename(f.delete_file)
    where {{ where }}
    group by f._partition_key, f.table_name
  )
  group by all
{%- endmacro %}

{#
  Rows of `relation` that belong to touched sessions: from the hours `hours` names (session_hours_to_read), or
  when it is none, from every hour within the session cap of the window.
#}
{% macro rows_of_touched_sessions(relation, hours) -%}
  {%- if is_partition_run() and hours is none -%}
  select r.* from {{ relation }} r
  semi join ({{ touched_sessions() }}) t using (visit_user_id, session_id)
  where {{ near_window(var('session_cap_days'), 'r._partition_key') }}
  {%- elif is_partition_run() -%}
  select r.* from {{ relation }} r
  semi join ({{ indexed_touched_sessions() }}) t using (visit_user_id, session_id)
  where {{ in_hours(hours, 'r._partition_key') }}
  {%- else -%}
  select * from {{ relation }}
  {%- endif -%}
{%- endmacro %}

{# `column` is one of `hours` (partition keys), as literals: DuckLake skips the other hours' files. #}
{% macro in_hours(hours, column) -%}
  {%- if hours -%}
  {{ column }} in ({% for hour in hours %}'{{ hour }}'{{ ", " if not loop.last }}{% endfor %})
  {%- else -%}
  false
  {%- endif -%}
{%- endmacro %}

{# pvar rows of touched sessions merged into one map per page view: the latest value of each key. #}
{% macro page_variables_of_touched_sessions(hours) -%}
  select page_request_id, map_from_entries(list((key, value) order by key)) as page_variables
  from (
      select page_request_id, entry.key as key, arg_max(entry.value, time) as value
      from (
          select page_request_id, time, unnest(map_entries(page_variable)) as entry
          from ({{ rows_of_touched_sessions(source('growingio', 'pvar'), hours) }})
      )
      group by all
  )
  group by all
{%- endmacro %}

{#
  Visitors whose sessions, login or visitor variables the run can change: from the session index when there is
  one (this run has just rebuilt it for its hours; one small scan instead of six, each a query of the catalog),
  else from the raw tables.
#}
{% macro touched_visitors() -%}
  select distinct visit_user_id from ({{ run_touched_sessions() }})
{%- endmacro %}

{#
  The Beijing dates ('YYYY-MM-DD') a partition run rebuilds daily numbers for: the dates of its window and the
  start dates of the sessions it touches, within the session cap. None in a full build.
#}
{% macro days_to_rebuild() -%}
  {%- if not (execute and is_partition_run()) -%}
    {{ return(none) }}
  {%- endif -%}
  {%- set cap = var('session_cap_days') -%}
  {%- set first, last = window_dates() -%}
  {%- set reach = modules.datetime.timedelta(days=cap) -%}
  {%- set days_query -%}
    select distinct strftime(s.beijing_date, '%Y-%m-%d') from {{ ref('sessions') }} s
    semi join ({{ run_touched_sessions() }}) t using (visit_user_id, session_id)
    -- the literal bounds let DuckLake skip files; the window test is the exact one
    where s.beijing_date between date '{{ first - reach }}' and date '{{ last + reach }}'
      and {{ near_window(cap, "strftime(s.beijing_date, '%Y%m%d0000')") }}
  {%- endset -%}
  {%- set session_days = run_query(days_query).columns[0].values() -%}
  {{ return(([first | string, last | string] + session_days | list) | unique | sort) }}
{%- endmacro %}
