"""News tools: timelines of a topic and groups of copied articles."""
