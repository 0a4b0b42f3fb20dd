"""Import path kept for existing code; new code imports these names from `dottxt`."""

from ._types import ChatCompletion, ChatCompletionChunk, Model, ModelPage

__all__ = ["ChatCompletion", "ChatCompletionChunk", "Model", "ModelPage"]
