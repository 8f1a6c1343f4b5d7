{{ config(unique_key='beijing_date', rebuilds='attribution_days_around_window') }}
{#
  One row per (beijing_date, link_id): clicks on the link that day, activations the vendor attributed
  to it, and activations that this model matches to an earlier click of the link within
  `attribution_days`, by device id (idfa, IMEI, androidId, OAID; the latest such click wins), else by
  IP and user agent. A partition run rebuilds every day within `attribution_days` of its hours, the days
  its clicks, activations and visits can change, and deletes those days' rows first (config `rebuilds`),
  so that a day a reload left without clicks or activations loses its rows too.
#}

{% set days = var('attribution_days') %}

with clicks as (
    select hash(idfa, imei, android_id, oaid, ip, user_agent, event_time, link_id, uuid) as click_id,
           nullif(idfa, '') as idfa, nullif(imei, '') as imei, nullif(android_id, '') as android_id,
           nullif(oaid, '') as oaid, nullif(ip, '') as ip, user_agent, event_time, link_id
    from {{ source('growingio', 'ads_track_click') }}
    where {{ near_window(2 * days + 1) }}
),

activations as (
    select hash(visit_user_id, idfa, imei, android_id, oaid, ip, user_agent, send_time, link_id) as activation_id,
           visit_user_id, nullif(idfa, '') as idfa, nullif(imei, '') as imei,
           nullif(android_id, '') as android_id, nullif(oaid, '') as oaid, nullif(ip, '') as ip, user_agent,
           send_time, link_id, {{ beijing_date('send_time') }} as beijing_date, _partition_key
    from {{ source('growingio', 'ads_track_activation') }}
    where {{ near_window(days + 1) }}
),

candidates as (
    {%- for device_id in ['idfa', 'imei', 'android_id', 'oaid'] %}
    select a.activation_id, c.click_id, c.link_id, c.event_time as click_time, true as by_device
    from activations a join clicks c on a.{{ device_id }} = c.{{ device_id }}
    where c.event_time < a.send_time and c.event_time >= a.send_time - interval {{ days }} day
    union all
    {%- endfor %}
    select a.activation_id, c.click_id, c.link_id, c.event_time, false
    from activations a join clicks c on a.ip = c.ip and a.user_agent = c.user_agent
    where c.event_time < a.send_time and c.event_time >= a.send_time - interval {{ days }} day
),

matches as (
    select activation_id,
           arg_max(link_id, (by_device, click_time, click_id)) as matched_link_id,
           bool_or(by_device) as by_device
    from candidates
    group by all
),

returned as (
    -- activations whose visitor visited after the activation, within the attribution window
    select distinct a.activation_id
    from activations a
    join {{ source('growingio', 'visit') }} v on v.visit_user_id = a.visit_user_id
    where {{ near_window(2 * days + 1, 'v._partition_key') }}
      and v.send_time > a.send_time and v.send_time <= a.send_time + interval {{ days }} day
),

click_counts as (
    select {{ beijing_date('event_time') }} as beijing_date, link_id, count(*) as clicks
    from clicks
    where {{ attribution_days_around_window(beijing_date('event_time')) }}
    group by all
),

activation_counts as (
    select beijing_date, link_id, count(*) as activations
    from activations
    where {{ attribution_days_around_window() }}
    group by all
),

matched_counts as (
    select a.beijing_date, m.matched_link_id as link_id,
           count(*) as matched_activations,
           count(*) filter (where m.by_device) as matched_by_device,
           count(*) filter (where not m.by_device) as matched_by_ip_user_agent,
           count(r.activation_id) as matched_returning_visitors
    from activations a
    join matches m using (activation_id)
    left join returned r using (activation_id)
    where {{ attribution_days_around_window('a.beijing_date') }}
    group by all
)

select
    beijing_date,
    link_id,
    coalesce(c.clicks, 0) as clicks,
    coalesce(a.activations, 0) as activations,
    coalesce(m.matched_activations, 0) as matched_activations,
    coalesce(m.matched_by_device, 0) as matched_by_device,
    coalesce(m.matched_by_ip_user_agent, 0) as matched_by_ip_user_agent,
    coalesce(m.matched_returning_visitors, 0) as matched_returning_visitors
from click_counts c
full join activation_counts a using (beijing_date, link_id)
full join matched_counts m using (beijing_date, link_id)
