{#
  The partition window of an incremental run. Raw rows carry _partition_key (yyyyMMddHHmm, Beijing
  time), which sorts like the time it names, so every filter below is a range on it: DuckDB (and
  DuckLake's file statistics) skip what lies outside, and a run reads only hours near its own.
#}

{#
  The window comes from the environment (GROWINGIO_ANALYTICS_START_KEY, GROWINGIO_ANALYTICS_END_KEY), read
  only at execution: with --vars, every new window made dbt re-parse the whole project (seconds per run).
#}
{% macro window_key(name) -%}
  {%- if execute -%}
    {{ return(env_var('GROWINGIO_ANALYTICS_' ~ name ~ '_KEY', '') or none) }}
  {%- endif -%}
  {{ return(none) }}
{%- endmacro %}

{# A bound of the window ('START' or 'END') as a datetime, for date arithmetic in a macro. #}
{% macro window_time(name) -%}
  {{ return(modules.datetime.datetime.strptime(window_key(name), '%Y%m%d%H%M')) }}
{%- endmacro %}

{% macro is_partition_run() -%}
  {{ return(is_incremental() and window_key('START') is not none and window_key('END') is not none) }}
{%- endmacro %}

{# A bound of the window ('START' or 'END') moved by `days`, as a partition key. #}
{% macro _shifted_key(name, days) -%}
  {{ return((window_time(name) + modules.datetime.timedelta(days=days)).strftime('%Y%m%d%H%M')) }}
{%- endmacro %}

{# The window's first and last Beijing dates (the end is exclusive), as dates. #}
{% macro window_dates() -%}
  {{ return([window_time('START').date(), (window_time('END') - modules.datetime.timedelta(minutes=1)).date()]) }}
{%- endmacro %}

{# The run's own hours; `true` in a full build. #}
{% macro in_window(column='_partition_key') -%}
  {%- if is_partition_run() -%}
    ({{ column }} >= '{{ window_key("START") }}' and {{ column }} < '{{ window_key("END") }}')
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{#
  The rows of the run's own export hours, as a filter on a TIMESTAMPTZ `column` holding export hours: literal
  bounds, so DuckLake skips other hours' files. Every row in a full build.
#}
{% macro window_export_hours(column='export_hour') -%}
  {%- if is_partition_run() -%}
    ({{ column }} >= {{ export_hour("'" ~ window_key('START') ~ "'") }}
     and {{ column }} < {{ export_hour("'" ~ window_key('END') ~ "'") }})
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{# The run's hours widened by `days` on both sides; `true` in a full build. #}
{% macro near_window(days, column='_partition_key') -%}
  {%- if is_partition_run() -%}
    ({{ column }} >= '{{ _shifted_key("START", -days) }}'
     and {{ column }} < '{{ _shifted_key("END", days) }}')
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}

{# The Beijing calendar date of a TIMESTAMPTZ, as GrowingIO's dashboards count days. #}
{% macro beijing_date(column) -%}
  cast(timezone('Asia/Shanghai', {{ column }}) as date)
{%- endmacro %}

{# A partition key (yyyyMMddHHmm, Beijing) as the TIMESTAMPTZ of the hour's start. #}
{% macro export_hour(column='_partition_key') -%}
  timezone('Asia/Shanghai', strptime({{ column }}, '%Y%m%d%H%M'))
{%- endmacro %}

{# Partition keys of the Beijing dates in `dates_sql` (a query of one `d` DATE column), as a filter. #}
{% macro on_dates(dates_sql, column='_partition_key') -%}
  left({{ column }}, 8) in (select strftime(d, '%Y%m%d') from ({{ dates_sql }}))
{%- endmacro %}

{#
  The same for dates known before the query (`days`, 'YYYY-MM-DD' strings): a range of partition keys per
  date, which DuckLake skips other hours' files by.
#}
{% macro on_days(days, column='_partition_key') -%}
  ({% for day in days -%}
  {%- set next_day = modules.datetime.date.fromisoformat(day) + modules.datetime.timedelta(days=1) -%}
  ({{ column }} >= '{{ day | replace('-', '') }}0000' and {{ column }} < '{{ next_day.strftime('%Y%m%d') }}0000')
  {{- ' or ' if not loop.last }}
  {%- endfor %})
{%- endmacro %}

{# `date_expression` is one of `days` ('YYYY-MM-DD' strings), as literals DuckLake can skip files by. #}
{% macro in_days(days, date_expression) -%}
  {{ date_expression }} in ({% for day in days %}date '{{ day }}'{{ ', ' if not loop.last }}{% endfor %})
{%- endmacro %}

{#
  The Beijing dates within attribution_days of the run's hours, as a filter on a DATE `column`: the ad days a
  partition run can change (its clicks match activations up to that many days later, its visits make activations
  up to that many days earlier returning, and a reload can take any of them away). Every row in a full build.
#}
{% macro attribution_days_around_window(column='beijing_date') -%}
  {%- if is_partition_run() -%}
  {%- set reach = modules.datetime.timedelta(days=var('attribution_days')) -%}
  {%- set first, last = window_dates() -%}
    ({{ column }} between date '{{ first - reach }}' and date '{{ last + reach }}')
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}
