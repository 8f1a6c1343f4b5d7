{{ config(unique_key=['visit_user_id', 'session_id'], rebuilds='touched_session_rows') }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{% set hours = session_hours_to_read() %}
{#
  One row per custom_event row, with its page's variables. A partition run rebuilds the custom events
  of the sessions it touches (a later pvar row can add page variables). The user key is added by the
  view custom_events, because a visitor's login can change it long after the event.
#}

with page_variables as ({{ page_variables_of_touched_sessions(hours) }})

select
    e.visit_user_id,
    e.session_id,
    e.page_request_id,
    e.event_name,
    e.event_number,
    coalesce(e.event_variable, map()) as event_variables,
    coalesce(v.page_variables, map()) as page_variables,
    e.login_user_id,
    e.domain,
    e.page,
    e.query_parameters,
    e.time,
    e.send_time,
    e.page_time,
    {{ export_hour('e._partition_key') }} as export_hour,
    {{ beijing_date('e.send_time') }} as beijing_date
from ({{ rows_of_touched_sessions(source('growingio', 'custom_event'), hours) }}) e
left join page_variables v using (page_request_id)
