{#
  This host's write turn (growingio_pipeline/dbt_lake.py) on a SQLite catalog, which admits one writer.
  An incremental model first computes its rows into a temporary table, in a transaction that only reads
  the lake, and takes the turn just before it writes them: a load waits at most for a model's
  delete+insert and commit, never for its query. A model built whole (its first run, --full-refresh, the
  view) writes as it computes, so it takes the turn before it starts. Each model gives the turn back after
  its commit (dbt_project.yml).
#}
{% macro take_write_turn_unless_incremental() -%}
  {%- if not is_incremental() -%}
  select growingio_write_turn('take')
  {%- endif -%}
{%- endmacro %}

{#
  A model whose config names `rebuilds` (a macro giving a filter of the rows the run rebuilds) deletes those rows
  too, not only the rows whose key the run writes again: a session, page view or visitor whose rows a reload
  removed has no new row to replace it.
#}
{% macro duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) -%}
  commit;
  select growingio_write_turn('take');
  begin transaction;
  {%- set rebuilds = config.get('rebuilds') %}
  {%- if rebuilds %}
  {%- set keys = [unique_key] if unique_key is string else unique_key %}
  {%- set columns = get_quoted_csv(dest_columns | map(attribute="name")) %}
  delete from {{ target }}
  where ({{ context[rebuilds]() }}) or ({{ keys | join(', ') }}) in (select {{ keys | join(', ') }} from {{ source }});
  insert into {{ target }} ({{ columns }}) select {{ columns }} from {{ source }}
  {%- else %}
  {{ dbt.duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) }}
  {%- endif %}
{%- endmacro %}
