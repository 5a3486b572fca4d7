"""The one place errors reach the UI: Atelier's user-facing errors become `gr.Error` with their message.

On the page a message names a field by the label its control shows ("Max frames per chunk: …"), not by the API's
parameter name, and its text is escaped (Gradio's toast reads HTML, so `<|image_1|>` would vanish). A script
(gradio_client sends `x-gradio-user: api`) gets the message as before, named by the parameter ("max_new_tokens: …").
"""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import logging
import re

import gradio as gr

from pipelines.errors import AtelierError, InvalidRequest, UnknownModel

log = logging.getLogger(__name__)


def shown_label(component) -> str | None:
    """How a message names a control: its label up to the first explanation ("Seed (-1 = random)" → "Seed",
    "Strength: how much to repaint (0 keeps the image)" → "Strength"); None for a control without a label."""
    label = getattr(component, "slot_name", None) or getattr(component, "label", None)
    if not label:
        return None
    short = re.split(r" \(|: |…", str(label), maxsplit=1)[0].strip(" .…")
    return short or str(label)


def field_labels(fields) -> dict[str, str | None]:
    """API parameter → the label the page shows, for a tab's FieldTable (None where the control has no label:
    the message then names the input itself, as the Edit tab's "Image 2: …" does)."""
    return {field.name: shown_label(field.component) for field in fields.fields if field.component is not None}


def from_the_page(args, kwargs) -> bool:
    """Whether the event came from the app's own page (its client marks events `x-gradio-user: app`)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, gr.Request):
            headers = getattr(value, "headers", None) or {}
            return headers.get("x-gradio-user") == "app"
    return False


def offered_models(fields) -> tuple[tuple[str, str], ...]:
    """(name shown, id) of the models the tab's Model dropdown offers (demo models in demo mode)."""
    model = next((field.component for field in (fields.fields if fields is not None else ()) if field.name == "model"), None)
    choices = getattr(model, "choices", None) or ()
    return tuple((str(choice[0]), str(choice[1])) if isinstance(choice, (tuple, list)) else (str(choice), str(choice)) for choice in choices)


def with_offered_models(error: UnknownModel, offered: tuple[tuple[str, str], ...], page: bool) -> UnknownModel:
    """The error listing the models the dropdown offers, by the names it shows (ids for a script), instead of every
    model the catalog knows for the task; unchanged where the dropdown offers none of those."""
    listed = [(name, model_id) for name, model_id in offered if model_id in error.known]
    if not listed:
        return error
    names = [name for name, _ in listed] if page else [model_id for _, model_id in listed]
    return InvalidRequest("model", f"{error.head}; choose {error.kind}: {', '.join(names)}")


def page_message(error: AtelierError, labels: dict[str, str | None]) -> str:
    """The message as the page shows it: an InvalidRequest named by its control's label, the text escaped."""
    text = str(error)
    if isinstance(error, InvalidRequest) and error.field in labels:
        label = labels[error.field]
        text = f"{label}: {error.message}" if label else error.message[:1].upper() + error.message[1:]
    return html.escape(text, quote=False)


def quiet_error(message: str) -> gr.Error:
    """A `gr.Error` that Gradio does not print a traceback for (it would, ~35 lines, for every refused request)."""
    return gr.Error(message, print_exception=False)


def refused(where: str, message: str, cause: BaseException | None = None) -> gr.Error:
    """A request refused for a reason the user can act on: one log line (the traceback only with --verbose), and the
    error to raise."""
    log.info("refused (%s): %s", where, " ".join(message.split()))
    if cause is not None and log.isEnabledFor(logging.DEBUG):
        log.debug("traceback of the refusal in %s", where, exc_info=cause)
    return quiet_error(message)


def shown_to_user(handler, fields=None, offered: tuple[tuple[str, str], ...] | None = None):
    """Wrap an event handler (a function, or a generator that streams updates) so our errors show as a toast (and
    reach gradio_client as AppError). With the tab's FieldTable `fields`, the page names a bad value by its label."""
    labels = field_labels(fields) if fields is not None else {}
    # The models a message may list: the tab's Model dropdown's, unless the tab says (the Edit tab's dropdown shows one
    # mode's models at a time, its messages may name any mode's).
    offered = offered_models(fields) if offered is None else offered

    @contextlib.contextmanager
    def translated(page: bool):
        try:
            yield
        except gr.Error as error:
            refused(handler.__name__, error.message, error)
            error.print_exception = False
            raise
        except AtelierError as error:
            if isinstance(error, UnknownModel):
                error = with_offered_models(error, offered, page)
            raise refused(handler.__name__, page_message(error, labels) if page else str(error), error) from None
        except Exception as error:  # a bug: log the traceback, show a short message, keep serving
            log.exception("unexpected error in %s", handler.__name__)
            # Only the kind of error: its text may hold a path of the machine, which the log keeps.
            raise quiet_error(f"Unexpected error ({type(error).__name__}). The app is still running; details are in the log.") from None

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming_wrapper(*args, **kwargs):
            with translated(from_the_page(args, kwargs)):
                yield from handler(*args, **kwargs)

        return streaming_wrapper

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        with translated(from_the_page(args, kwargs)):
            return handler(*args, **kwargs)

    return wrapper
