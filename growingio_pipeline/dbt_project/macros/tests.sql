{#
  Data tests run as Dagster asset checks after each partition run. In a partition run they look only
  at the rows near the window (the rows the run can have written), so their cost stays flat too.
#}

{#
  A test's `where` config may name __window_start__: the first date of the run's window in a partition
  run, and the beginning of time in a full build (config values cannot call project macros).
#}
{% macro default__get_where_subquery(relation) -%}
  {%- set where = config.get('where', '') -%}
  {%- if where -%}
    {%- set start = window_key('START') -%}
    {%- set window_start = "strptime('" ~ start ~ "', '%Y%m%d%H%M')::date" if start else "date '0001-01-01'" -%}
    {%- set filtered -%}
      (select * from {{ relation }} where {{ where | replace('__window_start__', window_start) }}) dbt_subquery
    {%- endset -%}
    {%- do return(filtered) -%}
  {%- else -%}
    {%- do return(relation) -%}
  {%- endif -%}
{%- endmacro %}

{% test unique_combination(model, columns) %}
  select {{ columns | join(', ') }}, count(*) as rows
  from {{ model }}
  group by all
  having count(*) > 1
{% endtest %}

{% test expression_is_true(model, expression) %}
  select * from {{ model }} where not coalesce(({{ expression }}), false)
{% endtest %}
