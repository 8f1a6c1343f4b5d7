{{ config(unique_key=['visit_user_id', 'session_id'], rebuilds='touched_session_rows') }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{% set hours = session_hours_to_read() %}
{#
  One row per (visit_user_id, session_id). A partition run rebuilds each session it touches from all
  of that session's rows within `session_cap_days` of the hour, so the visit may sit in an earlier file.
#}

with visits as (
    select visit_user_id, session_id,
           arg_min(page, send_time) as landing_page,
           arg_min(referrer, send_time) as referrer,
           arg_min(query_parameters, send_time) as query_parameters,
           arg_min(channel, send_time) as channel,
           arg_min(platform, send_time) as platform,
           arg_min(domain, send_time) as domain,
           arg_min(vst_request_id, send_time) as vst_request_id,
           min(time) as first_time,
           max(time) as last_time,
           min(send_time) as first_send_time,
           max(send_time) as last_send_time
    from ({{ rows_of_touched_sessions(source('growingio', 'visit'), hours) }})
    group by all
),

events as (
    select visit_user_id, session_id, 'page' as kind, page_request_id as id, platform, domain, page,
           login_user_id, time, send_time
    from ({{ rows_of_touched_sessions(source('growingio', 'page'), hours) }})
    union all
    select visit_user_id, session_id, 'action', action_request_id, null, domain, page, null, time, send_time
    from ({{ rows_of_touched_sessions(source('growingio', 'action'), hours) }})
    union all
    select visit_user_id, session_id, 'custom_event', null, null, domain, page, login_user_id, time, send_time
    from ({{ rows_of_touched_sessions(source('growingio', 'custom_event'), hours) }})
),

event_summary as (
    select visit_user_id, session_id,
           count(distinct id) filter (where kind = 'page') as page_views,
           count(distinct id) filter (where kind = 'action') as actions,
           count(*) filter (where kind = 'custom_event') as custom_events,
           arg_min(page, time) filter (where kind = 'page') as first_page,
           arg_max(page, time) filter (where kind = 'page') as exit_page,
           any_value(platform) filter (where platform is not null) as platform,
           any_value(domain) filter (where kind = 'page') as domain,
           arg_max(login_user_id, time) filter (where login_user_id is not null) as login_user_id,
           max(time) filter (where login_user_id is not null) as login_time,
           min(time) as first_time,
           max(time) as last_time,
           min(send_time) as first_send_time,
           max(send_time) as last_send_time
    from events
    group by all
),

sessions as (
    select
        visit_user_id,
        session_id,
        v.vst_request_id,
        least(v.first_time, e.first_time) as session_start,
        greatest(v.last_time, e.last_time) as session_end,
        least(v.first_send_time, e.first_send_time) as first_send_time,
        greatest(v.last_send_time, e.last_send_time) as last_send_time,
        v.vst_request_id is not null as has_visit,
        coalesce(v.landing_page, e.first_page) as landing_page,
        e.exit_page,
        v.referrer,
        nullif(regexp_extract(v.query_parameters, '(?:^|&)utm_source=([^&]*)', 1), '') as utm_source,
        nullif(regexp_extract(v.query_parameters, '(?:^|&)utm_medium=([^&]*)', 1), '') as utm_medium,
        nullif(regexp_extract(v.query_parameters, '(?:^|&)utm_campaign=([^&]*)', 1), '') as utm_campaign,
        nullif(regexp_extract(v.query_parameters, '(?:^|&)utm_term=([^&]*)', 1), '') as utm_term,
        nullif(regexp_extract(v.query_parameters, '(?:^|&)utm_content=([^&]*)', 1), '') as utm_content,
        v.channel,
        coalesce(v.platform, e.platform) as platform,
        coalesce(v.domain, e.domain) as domain,
        coalesce(e.page_views, 0) as page_views,
        coalesce(e.actions, 0) as actions,
        coalesce(e.custom_events, 0) as custom_events,
        e.login_user_id,
        e.login_time
    from visits v
    full join event_summary e using (visit_user_id, session_id)
)

select
    * exclude (login_time),
    epoch(session_end - session_start) as duration_s,
    page_views = 1 as is_bounce,
    login_time,
    {{ beijing_date('first_send_time') }} as beijing_date
from sessions
