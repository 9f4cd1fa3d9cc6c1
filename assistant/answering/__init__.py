"""Answering and its checks: the prompt, the model's draft, the judge, citations and notes."""
