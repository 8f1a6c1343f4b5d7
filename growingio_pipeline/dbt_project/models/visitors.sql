{{ config(unique_key='visit_user_id', rebuilds='touched_visitor_rows', on_schema_change='append_new_columns') }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{% set export_hour_kept = visitor_variables_hours_kept() %}
{% set reread_hours = hours_of_replaced_visitor_variables() if export_hour_kept else [] %}
{% set kept_export_hour = 'visitor_variables_export_hour' if export_hour_kept else 'null::timestamptz' %}
{#
  One row per visit_user_id: the latest login it was seen with and its user_key, from its sessions.
  A partition run rebuilds the visitors it touches from their rows in analytics.sessions (one column
  scan of that table, no raw history) and keeps the latest visitor variables seen so far, with the export
  hour of their vstr row, so that a reload of that hour can replace them.
#}

with sessions as (
    select * from {{ ref('sessions') }}
    {% if is_partition_run() %}
    where visit_user_id in ({{ touched_visitors() }})
    {% endif %}
),

from_sessions as (
    select
        visit_user_id,
        arg_max(login_user_id, login_time) filter (where login_user_id is not null) as login_user_id,
        min(first_send_time) as first_seen,
        max(last_send_time) as last_seen,
        min(session_start) as first_session_start,
        arg_min(channel, session_start) as first_channel,
        arg_min(referrer, session_start) as first_referrer,
        arg_min(platform, session_start) as first_platform,
        count(*) as sessions,
        sum(page_views) as page_views
    from sessions
    group by all
),

visitor_variables as (
    -- the latest vstr row: the window's rows against what this table already holds, but for values that came
    -- from the window's hours (a reload may have removed their row): those visitors' rows are read again
    select visit_user_id,
           arg_max({'variables': visitor_variables, 'export_hour': export_hour}, visitor_variables_time) as latest,
           max(visitor_variables_time) as visitor_variables_time
    from (
        select visit_user_id, visitor_variable as visitor_variables, time as visitor_variables_time,
               {{ export_hour() }} as export_hour
        from {{ source('growingio', 'vstr') }}
        where {{ in_window() }}{% if reread_hours %} or {{ in_hours(reread_hours, '_partition_key') }}{% endif %}
        {% if is_partition_run() %}
        union all
        select visit_user_id, visitor_variables, visitor_variables_time, {{ kept_export_hour }}
        from {{ this }}
        where visit_user_id in ({{ touched_visitors() }}) and visitor_variables_time is not null
          and {{ window_export_hours(kept_export_hour) }} is not true
        {% endif %}
    )
    group by all
)

select
    s.visit_user_id,
    s.login_user_id,
    coalesce(s.login_user_id, s.visit_user_id) as user_key,
    s.first_seen,
    s.last_seen,
    s.first_session_start,
    s.first_channel,
    s.first_referrer,
    s.first_platform,
    s.sessions,
    s.page_views,
    v.latest.variables as visitor_variables,
    v.visitor_variables_time,
    v.latest.export_hour as visitor_variables_export_hour
from from_sessions s
left join visitor_variables v using (visit_user_id)
