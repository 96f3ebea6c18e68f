"""Local stand-ins for the outside services the project talks to, for `make run` and end-to-end tests."""
