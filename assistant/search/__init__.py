"""Search and evidence: hybrid retrieval, and the passages picked for the prompt."""
