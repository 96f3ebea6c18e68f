"""The code agent: turns an issue labelled `agent-task` into a pull request."""
