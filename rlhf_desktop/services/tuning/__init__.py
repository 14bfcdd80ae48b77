"""Tuning the chat model: local runs (a separate process), the remote jobs, the measured effect
after a tune, RM-amplified pairs and the tuning packages."""
