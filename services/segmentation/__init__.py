"""Segmentation: customer value (RFM, lifetime value), churn risk, loyalty-ladder stage, segments, analytics."""
