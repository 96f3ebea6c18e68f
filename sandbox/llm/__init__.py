"""A local LLM provider speaking Anthropic's Messages API and OpenAI's Chat Completions, with scripted
replies and faults (see server.py); run it with `python -m sandbox.llm --port 8072 --api-key-file F`."""

from sandbox.llm.control import LlmSandboxControl, LlmSandboxError
from sandbox.llm.server import DEFAULT_REPLY, LlmSandbox

__all__ = ["DEFAULT_REPLY", "LlmSandbox", "LlmSandboxControl", "LlmSandboxError"]
