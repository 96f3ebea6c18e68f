"""Benchmarks for the webhook ingress, on the official Pub/Sub and Firestore emulators.

`python -m bench.webhook_load` drives a constant arrival rate of signed deliveries and checks that
every accepted one reached Pub/Sub; `python -m bench.cold_start` measures a fresh instance's time
to its first 202. See bench/README.md.
"""
