"""The streaming runtime: the faust app factory and its exactly-once, table, snapshot and stream helpers, the batched
aiokafka driver and the runtime of a service built on it, the Kafka codec, the topic registry and dead-letter
records.
"""
