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

{% macro duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) -%}
  commit;
  select growingio_write_turn('take');
  begin transaction;
  {{ dbt.duckdb__get_delete_insert_merge_sql(target, source, unique_key, dest_columns, incremental_predicates) }}
{%- endmacro %}
