{# Models go to exactly the schema they name (analytics), not <target schema>_analytics. #}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {{ (custom_schema_name or target.schema) | trim }}
{%- endmacro %}
