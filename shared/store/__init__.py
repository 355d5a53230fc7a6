"""The SQL side: the read model (tickets, timeline, deliveries, silences, overrides) and the notifier's outbox."""
