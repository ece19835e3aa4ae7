"""Synthetic multi-agency data with ground truth."""
