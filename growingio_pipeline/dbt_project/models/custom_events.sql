{{ config(materialized='view') }}
{# One row per custom_event row, with the user key of its visitor as known now (see users). #}

select e.*, coalesce(u.user_key, e.visit_user_id) as user_key
from {{ ref('custom_event_rows') }} e
left join {{ ref('visitors') }} u using (visit_user_id)
