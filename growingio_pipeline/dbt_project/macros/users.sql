{#
  The user keys a partition run can change: every touched visitor's own id and every login id any of
  its sessions carried. That includes each one's old and new key, whatever changed.
#}
{% macro affected_user_keys() -%}
  select visit_user_id from ({{ touched_visitors() }})
  union
  select login_user_id from {{ ref('sessions') }}
  where login_user_id is not null and visit_user_id in ({{ touched_visitors() }})
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
