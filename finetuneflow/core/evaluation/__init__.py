"""Evaluation of a fine-tuned model against its base: overlap with the reference answer,
the pairwise LLM judge (prompt, verdicts, aggregation), the judge's cost and grounding.

Pure Python, no Qt, no storage: the evaluation job and the interfaces build on it.
"""
