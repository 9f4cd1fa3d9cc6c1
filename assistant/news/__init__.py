"""News tools: timelines of a topic. (Copy groups are found while indexing: `indexing.copies`.)"""
