{{ config(unique_key='_partition_key') }}
{{ depends_on_touched_sources() }}
{#
  Which export hours hold each session's rows: one row per (visit_user_id, session_id, _partition_key)
  seen in visit, page, action, custom_event, pvar or vstr. A partition run then reads a touched session's
  rows from those hours alone, not from every hour of the 3-day window (macros/touched.sql).

  raw_fingerprint identifies the raw rows each hour's entries were built from (raw_hour_fingerprints, read in
  the same snapshot as the rows): an hour whose rows have changed since (a reload whose models have not run
  yet) no longer matches, and runs read it whole until its own partition run rebuilds its entries.
#}

with raw_hours as ({{ raw_hour_fingerprints(in_window()) }}),

keys as (
    select distinct visit_user_id, session_id, _partition_key
    from ({{ session_rows_in_window('visit_user_id, session_id, _partition_key') }})
)

select k.visit_user_id, k.session_id, k._partition_key, f.raw_fingerprint
from keys k
join raw_hours f using (_partition_key)
