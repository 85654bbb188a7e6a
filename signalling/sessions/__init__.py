"""Recorded calls: tracker, summaries, CID store, durable outbox, chain writer and the verify CLI."""
