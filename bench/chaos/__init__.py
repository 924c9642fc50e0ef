"""Chaos test: purchases posted through the gateway while processes, Kafka and PostgreSQL crash, then
proof that every purchase was stored, earned points and was counted exactly once (`make chaos`)."""
