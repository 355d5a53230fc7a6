"""The streaming runtime: the exactly-once batched aiokafka driver (``transactional``, the router) and its in-memory
twin for unit tests (``memory``), the at-least-once batched driver (``driver``, the notifier) and the runtime of a
service built on them (``runtime``); for the sla worker, still a faust app: the faust app factory and its
exactly-once, table, snapshot and stream helpers; the Kafka codec, the topic registry and dead-letter records.
"""
