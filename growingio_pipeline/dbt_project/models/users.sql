{{ config(unique_key='user_key', post_hook="{{ delete_memberless_users() }}") }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{#
  One row per user_key = coalesce(latest login_user_id of the visitor, visit_user_id): visitors stitched
  to logged-in users. A partition run rebuilds every user key its visitors had or now have (the
  post-hook deletes those left without a visitor, so a visitor who logged in leaves its anonymous row).
#}

with members as (
    select * from {{ ref('visitors') }}
    {% if is_partition_run() %}
    where user_key in ({{ affected_user_keys() }})
    {% endif %}
)

select
    user_key,
    max(login_user_id) as login_user_id,
    list(visit_user_id order by visit_user_id) as visit_user_ids,
    min(first_seen) as first_seen,
    max(last_seen) as last_seen,
    arg_min(first_channel, first_session_start) as first_channel,
    arg_min(first_referrer, first_session_start) as first_referrer,
    arg_min(first_platform, first_session_start) as first_platform,
    sum(sessions) as sessions,
    sum(page_views) as page_views,
    arg_max(visitor_variables, visitor_variables_time) as visitor_variables
from members
group by all
