{{ config(unique_key='beijing_date') }}
{{ depends_on_touched_sources() }}
{#
  One row per (beijing_date, platform, domain); a day is the Beijing date of send_time. A partition
  run rebuilds the days it falls in and the start days of the sessions it touches (a session that
  crosses midnight changes the bounce rate and duration of the day it started).
#}

{% set cap = var('session_cap_days') %}

with dates as (
    {% if is_partition_run() %}
    select strptime('{{ window_key("START") }}', '%Y%m%d%H%M')::date as d  -- keys are Beijing time
    union
    select (strptime('{{ window_key("END") }}', '%Y%m%d%H%M') - interval 1 minute)::date
    union
    select beijing_date from {{ ref('sessions') }} s
    semi join ({{ touched_sessions() }}) t using (visit_user_id, session_id)
    where {{ near_window(cap, "strftime(s.beijing_date, '%Y%m%d0000')") }}
    {% else %}
    select distinct {{ beijing_date('send_time') }} as d from {{ source('growingio', 'page') }}
    union
    select distinct {{ beijing_date('send_time') }} from {{ source('growingio', 'visit') }}
    {% endif %}
),

activity as (
    select {{ beijing_date('send_time') }} as beijing_date, platform, domain, visit_user_id, session_id,
           true as is_page_view
    from {{ source('growingio', 'page') }}
    where {{ near_window(cap) }} and {{ on_dates('select d from dates') }}
    union all
    select {{ beijing_date('send_time') }}, platform, domain, visit_user_id, session_id, false
    from {{ source('growingio', 'visit') }}
    where {{ near_window(cap) }} and {{ on_dates('select d from dates') }}
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
    where beijing_date in (select d from dates)
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
