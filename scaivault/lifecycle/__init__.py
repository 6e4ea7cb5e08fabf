"""Secret lifecycle: value generators, rotation, events, webhooks and subscriptions (issue 11)."""
