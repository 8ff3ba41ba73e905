"""/v1/files: tuning data sets as OpenAI files (purpose `fine-tune`)."""

from inhouse.api.tuning.files import router

__all__ = ["router"]
