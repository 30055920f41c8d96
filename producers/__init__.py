"""Publishing into supplybus: the publisher API and the outbox relay."""
