"""Segmentation analytics: retention, repeat customers, cohorts, churn, new vs loyal, revenue by value
tier and defection reasons — as JSON, or as a PNG/SVG chart of the same figures (`format=png|svg`).

Definitions (every period is a UTC day, ISO week from Monday, or calendar month; money is in minor
units and never added across currencies):

- **Cohort retention** (`GET /analytics/cohorts`): customers grouped by the month of their first
  purchase ever; for each following month k = 0…`months`, the share of the cohort who bought in month k
  (k = 0 is the cohort's own month, so 100 % for every non-empty cohort). Cohorts are the whole months
  that `[since, until)` touches; months that have not begun yet are null.
- **Retention rate** of a period (`GET /analytics/retention`): customers who bought in the previous
  period and again in this one ÷ customers who bought in the previous period.
- **Repeat-customer share**: customers with ≥ 2 purchases in `[since, until)` ÷ customers with ≥ 1.
- **Churn rate**: customers whose last purchase is older than `lapse_days` (default 180) at `until` ÷
  customers with ≥ 1 purchase before `until`; when `until` is now (the default) and the value model's
  `customer_value.active` is there with rows, churned = not active, among customers with a purchase.
  The basis used is reported.
- **New vs loyal** (`GET /analytics/new-vs-loyal`): per period, customers, purchases and gross revenue
  from first-time buyers (their first purchase ever is in that period) and from returning buyers.
- **Revenue by tier** (`GET /analytics/revenue-by-tier`): net spend (purchases − refunds in the range,
  per currency) grouped by `customer_value.value_tier` (`unclassified` without a value row).
- **Defection reasons** (`GET /analytics/defections`): defections recorded in the range, by reason.

Everything is aggregated inside the database (`queries`), the same on SQLite and PostgreSQL.
"""
