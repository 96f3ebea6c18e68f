"""The GitHub sandbox: GitHub's REST subset, webhooks and people's actions, held to GitHub's descriptions.

Run it with `python -m sandbox.github`; drive it with `sandbox.github.control.SandboxControl` or
`agentops sandbox github ...`.
"""

from sandbox.github.server import GitHubSandbox, generate_app_key

__all__ = ["GitHubSandbox", "generate_app_key"]
