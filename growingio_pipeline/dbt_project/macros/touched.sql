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

{% macro touched_sessions() -%}
  select distinct visit_user_id, session_id from (
    {%- for name in session_tables() %}
    select visit_user_id, session_id from {{ source('growingio', name) }} where {{ in_window() }}
    {%- if not loop.last %} union all{% endif %}
    {%- endfor %}
  )
{%- endmacro %}

{# Rows of `relation` that belong to touched sessions, read only near the window. #}
{% macro rows_of_touched_sessions(relation) -%}
  {%- if is_partition_run() -%}
  select r.* from {{ relation }} r
  semi join ({{ touched_sessions() }}) t using (visit_user_id, session_id)
  where {{ near_window(var('session_cap_days'), 'r._partition_key') }}
  {%- else -%}
  select * from {{ relation }}
  {%- endif -%}
{%- endmacro %}

{# pvar rows of touched sessions merged into one map per page view: the latest value of each key. #}
{% macro page_variables_of_touched_sessions() -%}
  select page_request_id, map_from_entries(list((key, value) order by key)) as page_variables
  from (
      select page_request_id, entry.key as key, arg_max(entry.value, time) as value
      from (
          select page_request_id, time, unnest(map_entries(page_variable)) as entry
          from ({{ rows_of_touched_sessions(source('growingio', 'pvar')) }})
      )
      group by all
  )
  group by all
{%- endmacro %}

{# Visitors whose sessions, login or visitor variables the run can change. #}
{% macro touched_visitors() -%}
  select distinct visit_user_id from ({{ touched_sessions() }})
{%- endmacro %}
