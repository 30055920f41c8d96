"""Database polling: events from a legacy table read by key or updated-at watermark."""
