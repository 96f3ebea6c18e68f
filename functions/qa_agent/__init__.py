"""The QA agent: gates every pull request with a deterministic, explainable risk report."""
