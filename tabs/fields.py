"""A tab's inputs as one table, and the one path every job of a tab takes (check → queue → shown; the page then
remembers its values).

Each tab lists its fields once — API name, control, default for scripts, whether it is remembered, how a result's
record gives it back — and every list Gradio wants (the handler's parameters, the event's inputs, the remembered
controls, Reuse settings' values) is derived from that table, so a new field is one line."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import gradio as gr

from pipelines.errors import JobStopped
from pipelines.jobs import QueuedJob
from tabs.context import AppContext, event_of, owner_of, user_of
from tabs.errors import refused
from tabs.saved_settings import RememberedValues

_NO_DEFAULT = inspect.Parameter.empty
Result = TypeVar("Result")


def _recorded(name: str) -> Callable[[dict], Any]:
    return lambda used: used.get(name)


def never(value) -> bool:
    """A `restore_if` for a remembered value that never comes back when a page opens (Reuse settings still fills it)."""
    return False


@dataclass(frozen=True)
class Field:
    """One input of a tab.

    `name` is the API parameter (and the key it is remembered under); `component` the control, or None for an API
    parameter with no control of its own. `default` is what a script that leaves the parameter out gets (none: the
    parameter is required). `remembered` puts the field among the values a page gets back when it opens again
    (see `remember_on`) and that Reuse settings fills; `from_record` reads its value from a result's parameters (by default the record's entry of that name).
    `api` False keeps a remembered control out of the handler's parameters. `restore_if` is the test a remembered
    value must pass to come back when a page opens, in place of its control's own (see `suits_control`): `never` for a
    value that means nothing without an upload the page cannot give back."""

    name: str
    component: Any = None
    default: Any = _NO_DEFAULT
    remembered: bool = False
    from_record: Callable[[dict], Any] | None = None
    api: bool = True
    restore_if: Callable[[Any], bool] | None = None

    def recorded(self, used: dict) -> Any:
        return (self.from_record or _recorded(self.name))(used)


class FieldTable:
    """A tab's fields in the order of its API parameters; `remembered_order` gives the order of the remembered
    controls where it differs (it is the order of /reuse_settings' outputs, which scripts rely on)."""

    def __init__(self, fields: list[Field], remembered_order: tuple[str, ...] = ()):
        self.fields = tuple(fields)
        names = [field.name for field in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"a field is listed twice: {names}")
        by_name = {field.name: field for field in self.fields}
        order = remembered_order or tuple(field.name for field in self.fields if field.remembered)
        self.remembered = tuple(by_name[name] for name in order)
        if any(not field.remembered for field in self.remembered) or len(self.remembered) != sum(f.remembered for f in self.fields):
            raise ValueError(f"remembered_order must list exactly the remembered fields: {order}")
        self.api_fields = tuple(field for field in self.fields if field.api)
        for field in self.fields:
            if isinstance(field.component, gr.Slider):
                _name_out_of_range(field.name, field.component)
        self.memory: RememberedValues | None = None

    @property
    def inputs(self) -> list:
        """The event's inputs: one control per API parameter, in order."""
        return [field.component for field in self.api_fields]

    @property
    def remembered_components(self) -> list:
        return [field.component for field in self.remembered]

    @property
    def remembered_names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.remembered)

    def handler(self, body: Callable[..., Any]) -> Callable[..., Any]:
        """`body(values, request, progress)` as a Gradio handler whose parameters are the API fields (so
        gradio_client sees their names and defaults), then Gradio's request and progress. A generator `body` makes a
        streaming handler."""

        def arguments(args, kwargs) -> tuple[dict, Any, Any]:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            return values, values.pop("request"), values.pop("progress")

        # Gradio streams a handler's updates only when the handler itself is a generator function.
        if inspect.isgeneratorfunction(body):

            def handler(*args, **kwargs):
                yield from body(*arguments(args, kwargs))

        else:

            def handler(*args, **kwargs):
                return body(*arguments(args, kwargs))

        parameters = [
            inspect.Parameter(field.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=field.default)
            for field in self.api_fields
        ]
        parameters += [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=gr.Request),
            inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()),
        ]
        signature = inspect.Signature(parameters)
        functools.update_wrapper(handler, body, assigned=("__module__", "__name__", "__qualname__", "__doc__"))
        handler.__signature__ = signature
        # Gradio finds the request parameter by its type hint.
        handler.__annotations__ = {"request": gr.Request}
        return handler

    def remember_on(self, context: AppContext, section: str, *triggers) -> None:
        """Remember the controls' values, for this browser (or logged-in user), on each of `triggers` (the page's
        Generate click); a script's call to the tab's endpoint is never remembered."""
        self.memory = RememberedValues(context.settings, section, self.remembered)
        self.memory.on(*triggers)

    def last_values(self, in_browser, request, offered_models) -> list:
        """The remembered controls' values for the page's load event: this browser's (or this user's) last values that
        still suit their controls, the others left as they are."""
        return self.memory.restored(in_browser, request, offered_models)

    def values_from_record(self, used: dict) -> tuple:
        """The remembered controls' values as a result's record gives them (Reuse settings)."""
        return tuple(field.recorded(used) for field in self.remembered)


def _name_out_of_range(name: str, slider: gr.Slider) -> None:
    """Gradio checks a slider's bounds before our request check runs, and its message names no field ("Value 0 is less
    than minimum value 1.0."): say which, as our own check would."""
    preprocess = slider.preprocess

    def named(payload):
        try:
            return preprocess(payload)
        except gr.Error:
            raise refused(name, f"{name}: {payload:g} is out of range; use {slider.minimum:g} to {slider.maximum:g}") from None

    slider.preprocess = named


@dataclass(frozen=True)
class TabQueue:
    """The path every job of one tab takes once its request is checked: it waits its turn in the queue, runs with
    progress and Stop, and a Stop gives the tab's stopped result. (The page remembers its values as it sends them:
    `remember_on`.)"""

    context: AppContext
    # Where the tab's values are remembered ("image") and its name in the queue's list ("Image").
    section: str
    title: str
    fields: FieldTable

    def run(self, summary: str, work: Callable[[QueuedJob], Result], stopped: Callable[[], Result], session, progress) -> Result:
        """`work(queued)` runs the checked job with the queue's ticket; `session` is Gradio's request (whose job).
        The job carries the request's event id, so a client's cancel of the request stops it as Stop does."""
        report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
        try:
            with self.context.queue.run(
                owner_of(session), self.title, summary, report, user=user_of(session), event=event_of(),
            ) as queued:
                return work(queued)
        except JobStopped:
            return stopped()

    def remember_on(self, *triggers) -> None:
        """The page's values are remembered on each of `triggers` (see `FieldTable.remember_on`)."""
        self.fields.remember_on(self.context, self.section, *triggers)
