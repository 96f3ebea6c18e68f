"""The repo scout: scans each repository's health (CI, alerts, hygiene, coverage), scores it and keeps one
health issue per repository up to date.

The decisions are pure: `health` turns facts into findings and a score, `issue` plans the health issue
from its previous body, `budget` decides when to stop before the rate limit runs out.
"""
