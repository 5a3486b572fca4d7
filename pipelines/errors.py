"""The user-facing errors. Tabs translate exactly these into `gr.Error`; anything else is a bug."""


class AtelierError(Exception):
    """An error whose message is written for the person using the app."""


class InvalidRequest(AtelierError):
    """A request value is out of range; the message names the field and what is accepted. `field` is the API's
    parameter name; a tab shows its control's label in its place (tabs/errors.py)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownModel(InvalidRequest):
    """A model id that is not among `known` (the ids of the models for the task). A tab names instead the models its
    dropdown offers (demo models in demo mode), by the names the dropdown shows."""

    def __init__(self, given, kind: str, known, head: str | None = None):
        self.given, self.kind, self.known = given, kind, tuple(known)
        # What is wrong, before the list: "unknown model 'x'", or the Edit tab's "'x' is not a model for Inpaint".
        self.head = head or f"unknown model {given!r}"
        super().__init__("model", f"{self.head}; choose {kind}: {', '.join(self.known)}")


class ModelNotAvailable(AtelierError):
    """The weights are not on this machine and cannot be fetched now."""


class ModelLoadFailed(AtelierError):
    """The weights are present but could not be loaded (corrupt file, wrong layout)."""


class NotEnoughMemory(AtelierError):
    """The job does not fit in the memory the active preset allows."""


class RetryAfterOutOfMemory(NotEnoughMemory):
    """Out of memory once; the plan stepped down and the step may be run again."""


class JobStopped(AtelierError):
    """The user pressed Stop; raised between denoising steps."""


class OutputNotWritable(AtelierError):
    """The outputs folder cannot be written (permissions, disk full)."""
