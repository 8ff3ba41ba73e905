"""Tuning: data sets for fine-tuning (chat JSONL, plain text, feedback, knowledge text)."""
