"""Evaluation: gold datasets and pure scoring functions."""
