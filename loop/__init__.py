"""Closing the loop (DESIGN §9): actions teams record, outcomes of listed people, and the evaluation."""
