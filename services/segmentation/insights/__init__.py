"""Insights of the segmentation service: micro-segments found by clustering (`clusters`) and
next-best-action playbooks, explainable decision trees written by staff or learned (`playbooks`).

Both read the same per-customer features the segment rules use (`customer_features`, with value, risk
and stage from `customer_value`); amounts are in the customer's main currency, minor units.
"""
