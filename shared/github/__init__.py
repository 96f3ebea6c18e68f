"""The GitHub App layer: App auth, installation tokens scoped per agent, and the REST client."""
