"""The test agent: gates every pull request on tests, coverage and performance."""
