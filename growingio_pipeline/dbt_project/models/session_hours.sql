{{ config(unique_key='_partition_key', on_schema_change='append_new_columns') }}
{{ depends_on_touched_sources() }}
{#
  Which export hours hold each session's rows: one row per (visit_user_id, session_id, _partition_key)
  seen in visit, page, action, custom_event, pvar or vstr. A partition run then reads a touched session's
  rows from those hours alone, not from every hour of the 3-day window (macros/touched.sql).

  raw_fingerprint identifies the raw rows each hour's entries were built from (raw_hour_fingerprints, read in
  the same snapshot as the rows): an hour whose rows have changed since (a reload whose models have not run
  yet) no longer matches, and runs read it whole until its own partition run rebuilds its entries.

  A session the index placed in the window's hours whose rows a reload has removed from them stays, marked
  departed: the run's models then rebuild it from its other hours, or delete it. Departed entries are kept
  (a retried run needs them too) until a full build; each costs the hour's later runs one touched session.
  (on_schema_change: an index built before departed entries gets the column, NULL for its rows.)
#}

with raw_hours as ({{ raw_hour_fingerprints(in_window()) }}),

keys as (
    select distinct visit_user_id, session_id, _partition_key
    from ({{ session_rows_in_window('visit_user_id, session_id, _partition_key') }})
)

select k.visit_user_id, k.session_id, k._partition_key, f.raw_fingerprint, false as departed
from keys k
join raw_hours f using (_partition_key)
{%- if is_partition_run() %}
union all
select o.visit_user_id, o.session_id, o._partition_key, f.raw_fingerprint, true
from {{ this }} o
left join raw_hours f using (_partition_key)
anti join keys k using (visit_user_id, session_id, _partition_key)
where {{ in_window('o._partition_key') }}
{%- endif %}
