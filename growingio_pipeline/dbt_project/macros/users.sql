{#
  The user keys a partition run can change: every touched visitor's own id, its key now (analytics.visitors,
  rebuilt before) and every key whose members include it (this table). That includes each one's old and new
  key, whatever changed, and the keys of visitors a reload removed. The touched visitors are read once.
#}
{% macro affected_user_keys() -%}
  with touched as materialized ({{ touched_visitors() }})
  select visit_user_id from touched
  union
  select user_key from {{ ref('visitors') }} semi join touched using (visit_user_id)
  union
  select user_key from (select user_key, unnest(visit_user_ids) as visit_user_id from {{ this }})
  semi join touched using (visit_user_id)
{%- endmacro %}

{# After the rebuild, in its transaction: the affected user keys no visitor has any more. #}
{% macro delete_memberless_users() -%}
  {%- if is_partition_run() -%}
  delete from {{ this }} where user_key in (
      select affected.user_key from ({{ affected_user_keys() }}) affected(user_key)
      anti join {{ ref('visitors') }} v using (user_key)
  )
  {%- endif -%}
{%- endmacro %}

{#
  The export hours to read again the vstr rows of visitors whose kept visitor variables came from the window's
  hours (a reload may have removed that row): every hour the session index places those visitors in. Usually
  none. Only for a table that keeps each value's export hour (visitor_variables_hours_kept).
#}
{% macro hours_of_replaced_visitor_variables() -%}
  {%- if not (is_partition_run() and session_index_exists()) -%}
    {{ return([]) }}
  {%- endif -%}
  {%- set hours_query -%}
    select distinct i._partition_key from {{ ref('session_hours') }} i
    semi join (
        select visit_user_id from {{ this }} where {{ window_export_hours('visitor_variables_export_hour') }}
    ) v using (visit_user_id)
    where i.departed is not true
  {%- endset -%}
  {{ return(run_query(hours_query).columns[0].values() | sort) }}
{%- endmacro %}

{# Whether analytics.visitors has visitor_variables_export_hour (a table built before it gets it on its next run). #}
{% macro visitor_variables_hours_kept() -%}
  {{ return('visitor_variables_export_hour' in adapter.get_columns_in_relation(this) | map(attribute='name') | list) }}
{%- endmacro %}
