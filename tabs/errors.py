"""The one place errors reach the UI: Atelier's user-facing errors become `gr.Error` with their message."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging

import gradio as gr

from pipelines.errors import AtelierError

log = logging.getLogger(__name__)


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


def shown_to_user(handler):
    """Wrap an event handler (a function, or a generator that streams updates) so our errors show as a toast (and
    reach gradio_client as AppError)."""

    @contextlib.contextmanager
    def translated():
        try:
            yield
        except gr.Error as error:
            refused(handler.__name__, error.message, error)
            error.print_exception = False
            raise
        except AtelierError as error:
            raise refused(handler.__name__, str(error), error) from None
        except Exception as error:  # a bug: log the traceback, show a short message, keep serving
            log.exception("unexpected error in %s", handler.__name__)
            raise quiet_error(f"Unexpected error ({type(error).__name__}: {error}). The app is still running; details are in the log.") from None

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def streaming_wrapper(*args, **kwargs):
            with translated():
                yield from handler(*args, **kwargs)

        return streaming_wrapper

    @functools.wraps(handler)
    def wrapper(*args, **kwargs):
        with translated():
            return handler(*args, **kwargs)

    return wrapper
