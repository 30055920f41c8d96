"""The signed webhook receiver (`supplybus serve webhook`): docs/webhook.md."""
