"""One folder per function: a thin `handler.py` shell beside a pure `core.py`."""
