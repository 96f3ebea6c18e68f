"""Shared runtime, ports and adapters for the Agent Ops functions."""
