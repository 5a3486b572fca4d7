"""The one place errors reach the UI: Atelier's user-facing errors become `gr.Error` with their message."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging

import gradio as gr

from pipelines.errors import AtelierError

log = logging.getLogger(__name__)


def shown_to_user(handler):
    """Wrap an event handler (a function, or a generator that streams updates) so our errors show as a toast (and
    reach gradio_client as AppError)."""

    @contextlib.contextmanager
    def translated():
        try:
            yield
        except gr.Error:
            raise
        except AtelierError as error:
            raise gr.Error(str(error)) from None
        except Exception as error:  # a bug: log the traceback, show a short message, keep serving
            log.exception("unexpected error in %s", handler.__name__)
            raise gr.Error(f"Unexpected error ({type(error).__name__}: {error}). The app is still running; details are in the log.") from None

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
