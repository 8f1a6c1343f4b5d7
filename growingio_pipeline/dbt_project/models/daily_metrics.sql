{{ config(unique_key='beijing_date') }}
{{ depends_on_session_index() }}
{% do keep_touched_sessions() %}
{#
  One row per (beijing_date, platform, domain); a day is the Beijing date of send_time. A partition
  run rebuilds the days it falls in and the start days of the sessions it touches (a session that
  crosses midnight changes the bounce rate and duration of the day it started): `days`, found before the
  query, so that DuckLake reads only those days' files.
#}

{% set days = days_to_rebuild() %}

with
{% if days is none %}
dates as (
    select distinct {{ beijing_date('send_time') }} as d from {{ source('growingio', 'page') }}
    union
    select distinct {{ beijing_date('send_time') }} from {{ source('growingio', 'visit') }}
),
{% endif %}

activity as (
    select {{ beijing_date('send_time') }} as beijing_date, platform, domain, visit_user_id, session_id,
           true as is_page_view
    from {{ source('growingio', 'page') }}
    where {{ on_dates('select d from dates') if days is none else on_days(days) }}
    union all
    select {{ beijing_date('send_time') }}, platform, domain, visit_user_id, session_id, false
    from {{ source('growingio', 'visit') }}
    where {{ on_dates('select d from dates') if days is none else on_days(days) }}
),

active as (
    select beijing_date, platform, domain,
           count(distinct visit_user_id) as visitors,
           count(distinct (visit_user_id, session_id)) as active_sessions,
           count(*) filter (where is_page_view) as page_views
    from activity
    group by all
),

new_visitors as (
    select a.beijing_date, a.platform, a.domain, count(distinct a.visit_user_id) as new_visitors
    from activity a
    join {{ ref('visitors') }} v on v.visit_user_id = a.visit_user_id
        and {{ beijing_date('v.first_seen') }} = a.beijing_date
    group by all
),

started as (
    select beijing_date, platform, domain,
           count(*) as sessions,
           -- exact integer sums, one division: the same result whatever order the rows are summed in
           count(*) filter (where is_bounce) / count(*) as bounce_rate,
           sum(epoch_ms(session_end) - epoch_ms(session_start)) / count(*) / 1000 as avg_session_duration_s
    from {{ ref('sessions') }}
    where {{ 'beijing_date in (select d from dates)' if days is none else in_days(days, 'beijing_date') }}
    group by all
)

select
    beijing_date,
    platform,
    domain,
    coalesce(a.visitors, 0) as visitors,
    coalesce(n.new_visitors, 0) as new_visitors,
    coalesce(s.sessions, 0) as sessions,
    coalesce(a.active_sessions, 0) as active_sessions,
    coalesce(a.page_views, 0) as page_views,
    s.bounce_rate,
    s.avg_session_duration_s
from active a
full join started s using (beijing_date, platform, domain)
left join new_visitors n using (beijing_date, platform, domain)
