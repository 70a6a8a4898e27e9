//! End-to-end tests: real tools against real brokers.
