"""Interactions: complaints."""
