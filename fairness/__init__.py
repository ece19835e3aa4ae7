"""fairness stage."""
