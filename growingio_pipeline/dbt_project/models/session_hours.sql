{{ config(unique_key='_partition_key') }}
{{ depends_on_touched_sources() }}
{#
  Which export hours hold each session's rows: one row per (visit_user_id, session_id, _partition_key)
  seen in visit, page, action, custom_event, pvar or vstr. A partition run then reads a touched session's
  rows from those hours alone, not from every hour of the 3-day window (macros/touched.sql).

  raw_files names the raw data files each hour's entries were built from, read in the same snapshot as
  the rows: an hour whose files have changed since (a reload whose models have not run yet) no longer
  matches, and runs read it whole until its own partition run rebuilds its entries.
#}

with raw_files as ({{ raw_hour_files(in_window()) }}),

keys as (
    select distinct visit_user_id, session_id, _partition_key
    from ({{ session_rows_in_window('visit_user_id, session_id, _partition_key') }})
)

select k.visit_user_id, k.session_id, k._partition_key, f.raw_files
from keys k
join raw_files f using (_partition_key)
