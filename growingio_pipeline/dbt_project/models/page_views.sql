{{ config(unique_key='page_request_id', rebuilds='touched_session_rows') }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{% set hours = session_hours_to_read() %}
{#
  One row per page_request_id. A partition run rebuilds every page view of the sessions it touches:
  a later hour can add the next page view (time_on_page), actions, custom events or page variables.
#}

with pages as (
    select * from ({{ rows_of_touched_sessions(source('growingio', 'page'), hours) }})
    -- the vendor can resend a page row: one row per page_request_id, the first received
    qualify row_number() over (partition by page_request_id order by send_time, time) = 1
),

page_variables as ({{ page_variables_of_touched_sessions(hours) }}),

actions as (
    select page_request_id, count(distinct action_request_id) as actions
    from ({{ rows_of_touched_sessions(source('growingio', 'action'), hours) }})
    group by all
),

custom_events as (
    select page_request_id, count(*) as custom_events
    from ({{ rows_of_touched_sessions(source('growingio', 'custom_event'), hours) }})
    group by all
)

select
    p.page_request_id,
    p.visit_user_id,
    p.session_id,
    p.vst_request_id,
    p.platform,
    p.domain,
    p.page,
    p.query_parameters,
    p.title,
    p.page_group,
    p.referrer,
    p.referrer_page,
    p.login_user_id,
    p.time,
    p.send_time,
    coalesce(v.page_variables, map()) as page_variables,
    p.app_variable,
    coalesce(a.actions, 0) as actions,
    coalesce(c.custom_events, 0) as custom_events,
    row_number() over session_pages as page_number,
    least(epoch(lead(p.time) over session_pages - p.time), 1800) as time_on_page,
    {{ export_hour('p._partition_key') }} as export_hour,
    {{ beijing_date('p.send_time') }} as beijing_date
from pages p
left join page_variables v using (page_request_id)
left join actions a using (page_request_id)
left join custom_events c using (page_request_id)
window session_pages as (partition by p.visit_user_id, p.session_id order by p.time, p.page_request_id)
