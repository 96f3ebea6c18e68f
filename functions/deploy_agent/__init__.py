"""The deploy agent: a release as a pure state machine (release, canary) driven by events."""
