"""Segmentation: customer value (RFM, lifetime value), churn risk, ladder stage, segments, analytics."""
