"""The processor runtime: knows nothing of the domain."""
