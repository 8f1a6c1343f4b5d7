{{ config(unique_key='export_hour', rebuilds='window_export_hours') }}
{# One row per page, action and custom_event row. A partition run replaces its own hours, emptied ones too. #}

with rows as (
    select 'page' as event_type, page_request_id as event_id, visit_user_id, session_id, page_request_id,
           cast(null as varchar) as action_request_id, cast(null as varchar) as event_name, domain, page,
           login_user_id, time, send_time, _partition_key
    from {{ source('growingio', 'page') }} where {{ in_window() }}
    union all
    select 'action', action_request_id, visit_user_id, session_id, page_request_id, action_request_id,
           request_type, domain, page, null, time, send_time, _partition_key
    from {{ source('growingio', 'action') }} where {{ in_window() }}
    union all
    select 'custom_event', null, visit_user_id, session_id, page_request_id, null, event_name, domain, page,
           login_user_id, time, send_time, _partition_key
    from {{ source('growingio', 'custom_event') }} where {{ in_window() }}
)

select
    event_type,
    event_id,
    visit_user_id,
    session_id,
    page_request_id,
    action_request_id,
    event_name,
    domain,
    page,
    login_user_id,
    time,
    send_time,
    {{ export_hour() }} as export_hour,
    {{ beijing_date('send_time') }} as beijing_date
from rows
