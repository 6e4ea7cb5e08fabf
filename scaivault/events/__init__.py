"""Events (spec/30 section 4): the outbox, its dispatcher, webhook delivery and subscriptions."""
from .outbox import EVENT_TYPES, emit, event_type_matches

__all__ = ["EVENT_TYPES", "emit", "event_type_matches"]
