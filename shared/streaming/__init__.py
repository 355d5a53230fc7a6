"""The streaming runtime: the exactly-once batched aiokafka driver (``transactional``, the router and the sla worker)
and its in-memory twin for unit tests (``memory``), the at-least-once batched driver (``driver``, the notifier) and
the runtime of a service built on them (``runtime``); local table snapshots (``snapshots``); the faust app factory
and its exactly-once, table and stream helpers (``app``, ``eos``, ``tables``, ``streams``), which no service runs
any more: bench/faust_ceiling measures faust through them; the Kafka codec, the topic registry and dead-letter
records.
"""
