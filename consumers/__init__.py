"""The processor runtime: batch loop, idempotency ledger, dead letters, priority lanes."""
