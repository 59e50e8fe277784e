"""What a channel is, and where the channels are found.

A channel is one object (see ``docs/channels.md``): its ``name``, a pure ``build`` step
from a brief to what the channel would send, ``preview`` (the dry run: files in a folder),
the rows and HTML the editor checks, and optionally a live send, described as units of work
(``send_units``: email's subscriber batches, one unit per social account, one for the site)
that any worker runs alone (``send_unit``): the CLI's ``publish --send`` and the approved
send of ``briefcast up`` run them the same way (``flows.units``). Channels are found
through the entry-point group ``briefcast.channels``, the way pytest and datasette find their
plug-ins: briefcast's own four are registered there in ``pyproject.toml`` like any other, so
adding a channel is one module and one entry point, and the core never imports ``channels/``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from briefcast.brief import Brief
from briefcast.config import Settings
from briefcast.errors import ConfigError, UserError

GROUP = "briefcast.channels"
T = TypeVar("T")
Row = dict[str, str | int]


@dataclass
class BuildContext:
    """What a build step may read besides its brief: the settings, every brief of this run
    (dated), and the published archive per language (read-only, this run's briefs left out)."""

    settings: Settings
    briefs: Sequence[Brief] = ()
    archive: Callable[[str], list[Brief]] = lambda _lang: []
    _shared: dict[str, Any] = field(default_factory=dict)

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` the first time ``key`` is asked for in this run, then the same value:
        for what every brief of a run shares (the feeds are built once, not once a brief)."""
        if key not in self._shared:
            self._shared[key] = make()
        value: T = self._shared[key]
        return value


@dataclass(frozen=True)
class Outputs:
    """Everything one brief becomes: by channel name, what that channel's build step made.
    A dry run and a live run build the same Outputs."""

    brief: Brief
    built: dict[str, Any]

    def of(self, channel: str) -> Any:
        return self.built[channel]


@runtime_checkable
class Channel(Protocol):
    """One destination. Sending (``SendingChannel``) is optional (see ``sends``)."""

    name: str  # --channels name and preview folder: lower-case letters, digits, dashes
    title: str  # heading on the preview page
    order: int  # place among the channels: briefcast's own are 10-40, plug-ins default 100

    def build(self, brief: Brief, ctx: BuildContext) -> Any:
        """What this channel would send for ``brief``. Pure: no writes, no network."""
        ...

    def preview(self, built: Any, folder: Path) -> list[Path]:
        """Write the dry run into ``folder`` (use ``safe_io.write_inside``); the files."""
        ...

    def preview_html(self, built: Any, brief: Brief, settings: Settings) -> str:
        """This channel's part of the preview page (escaped HTML; links relative to the
        brief's folder)."""
        ...

    def preview_rows(self, built: Any) -> list[Row]:
        """One row per thing that would go out: target, text, length, limit."""
        ...


@dataclass(frozen=True)
class SendUnit:
    """One piece of a channel's live send of one brief: what one Prefect task or flow run
    sends, on any worker. Plain data (``as_json``/``from_json``): it crosses processes and
    machines as a flow run's parameter, and the worker rebuilds the brief's outputs itself."""

    channel: str
    brief_id: str
    label: str  # names the task or flow run: "subscribers 1-5000", "desk-x", "site"
    params: dict[str, Any] = field(default_factory=dict)  # JSON values only
    # True: a process of its own (a long send, e.g. an email batch): on the fleet a flow run
    # that any worker takes, retried when its worker dies; in the CLI one after another.
    # False: a task beside the others of its channel, all at once.
    alone: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendUnit:
        return cls(
            channel=str(data["channel"]),
            brief_id=str(data["brief_id"]),
            label=str(data["label"]),
            params=dict(data.get("params") or {}),
            alone=bool(data.get("alone", False)),
        )


@dataclass(frozen=True)
class Limit:
    """A fleet-wide limit a channel's units share (a Prefect global concurrency limit that
    ``briefcast up`` makes): ``slots`` held at once or, with ``decay`` (slots given back
    per second), a rate limit whose slots are never given back."""

    name: str
    slots: int
    decay: float | None = None


class Pacer(Protocol):
    """What a unit's send asks of the fleet: ``hold`` slots of a concurrency limit while it
    sends, ``tick`` one slot of a rate limit before each call (waiting at most ``timeout``
    seconds, None: as long as it takes; ``TimeoutError`` after that). Unknown limits do not
    wait."""

    def hold(self, name: str, slots: int) -> AbstractContextManager[object]: ...

    def tick(self, name: str, timeout: float | None = None) -> None: ...


class Unpaced:
    """The pacer of a send with no fleet to share: nothing waits."""

    def hold(self, name: str, slots: int) -> AbstractContextManager[object]:
        return nullcontext()

    def tick(self, name: str, timeout: float | None = None) -> None:
        return None


class SendingChannel(Channel, Protocol):
    def check_ready(self, settings: Settings) -> None:
        """Raise a ``UserError`` when a live send could not start (a missing secret…):
        called for every channel before anything is sent on any of them."""
        ...

    def send_units(self, outputs: Outputs, settings: Settings) -> list[SendUnit]:
        """The brief's live send cut into units of work, each sent alone by ``send_unit``
        (none: nothing to send)."""
        ...

    def send_unit(
        self,
        unit: SendUnit,
        outputs: Outputs,
        settings: Settings,
        *,
        resend_unknown: bool,
        pacer: Pacer,
    ) -> Any:
        """Send one unit for real, once only (through a ledger): safe to run again after any
        crash, on any worker; returns its summary (``briefcast.reporting.Summary``)."""
        ...

    def combine(self, outputs: Outputs, settings: Settings, summaries: list[Any]) -> Any:
        """The channel's summary of the brief from its units' (in their order)."""
        ...


def sends(channel: Channel) -> bool:
    return callable(getattr(channel, "send_units", None))


def limits(settings: Settings) -> list[Limit]:
    """Every installed channel's fleet-wide limits (``briefcast up`` makes them)."""
    found: list[Limit] = []
    for channel in registry().values():
        of = getattr(channel, "limits", None)
        if callable(of):
            found += of(settings)
    return found


class ChannelError(UserError):
    """An unknown channel name, or a plug-in that cannot be loaded."""


@cache
def registry() -> dict[str, Channel]:
    """Every installed channel by name, in their order (then by name)."""
    found: dict[str, Channel] = {}
    for ep in entry_points(group=GROUP):
        try:
            channel = ep.load()
        except Exception as exc:  # a broken plug-in: one line naming it, not a traceback
            reason = f"channel plug-in {ep.name!r} ({ep.value}) cannot be loaded: {exc}"
            raise ConfigError(reason) from None
        if not isinstance(channel, Channel) or channel.name != ep.name:
            raise ConfigError(
                f"channel plug-in {ep.name!r} ({ep.value}) is not a briefcast Channel named "
                f"{ep.name!r} (see docs/channels.md)"
            )
        if ep.name in found and found[ep.name] is not channel:
            raise ConfigError(f"two channel plug-ins are named {ep.name!r}")
        found[ep.name] = channel
    return dict(sorted(found.items(), key=lambda item: (item[1].order, item[0])))


def names() -> list[str]:
    return list(registry())


def get(name: str) -> Channel:
    try:
        return registry()[name]
    except KeyError:
        raise ChannelError(f"unknown channel {name!r}; choose from {','.join(names())}") from None


def parse(value: str | Sequence[str]) -> list[str]:
    """``"email,feed"`` (or a list) to known channel names, in the order given, once each."""
    chosen = value.split(",") if isinstance(value, str) else list(value)
    chosen = [n.strip() for n in chosen if n.strip()]
    unknown = [n for n in chosen if n not in registry()]
    if unknown or not chosen:
        raise ChannelError(
            f"unknown channel {', '.join(unknown) or '(none)'}; choose from {','.join(names())}"
        )
    return list(dict.fromkeys(chosen))
