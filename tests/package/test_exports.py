"""The public names: where they live, and that each says so.

Every name in a public module's ``__all__`` exists; every class and
function of ours there names a public module as its ``__module__`` (one
from which it can be imported under that name), never a private
``_module``; the top level holds the server's API, the client's classes
live under :mod:`trio_cable.client`, and no name means two things.
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import pytest

import trio_cable
import trio_cable.client

#: Modules users import from (``trio_cable.direct`` and ``server`` are kept
#: as import paths for existing code).
PUBLIC = [
    "trio_cable",
    "trio_cable.asgi",
    "trio_cable.auth",
    "trio_cable.client",
    "trio_cable.direct",
    "trio_cable.server",
    "trio_cable.testing",
    "trio_cable.turbo",
]


def public(name: str) -> ModuleType:
    return importlib.import_module(name)


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_exported_name_exists(module_name: str) -> None:
    module = public(module_name)
    assert module.__all__, module_name
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("module_name", PUBLIC)
def test_exported_names_name_a_public_module(module_name: str) -> None:
    module = public(module_name)
    wrong = {}
    for name in module.__all__:
        obj = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        home = obj.__module__
        if not home.startswith("trio_cable"):
            continue
        if any(part.startswith("_") for part in home.split(".")):
            wrong[name] = home
        elif getattr(public(home), obj.__name__, None) is not obj:
            wrong[name] = f"{home} (not importable from there)"
    assert wrong == {}


def test_methods_follow_their_class() -> None:
    assert trio_cable.Cable.__module__ == "trio_cable"
    assert trio_cable.Cable.broadcast.__module__ == "trio_cable"
    assert trio_cable.Cable.broadcast.__qualname__ == "Cable.broadcast"
    # $pubsub (issue 13): a method of the cable, no new top-level name.
    signed = trio_cable.Cable.signed_stream_name
    assert (signed.__module__, signed.__qualname__) == (
        "trio_cable",
        "Cable.signed_stream_name",
    )
    assert trio_cable.RedisCable.__module__ == "trio_cable"
    assert trio_cable.client.CableClient.__module__ == "trio_cable.client"
    assert repr(trio_cable.CableError) == "<class 'trio_cable.CableError'>"


def test_the_top_level_is_the_server_api() -> None:
    top = set(trio_cable.__all__)
    for name in (
        "Cable",
        "Channel",
        "serve_cable",
        "CableError",
        "Request",
        "ActionError",
        "run",
        "HistoryPolicy",
    ):
        assert name in top
    # The channel decorators (issue 12) sit beside Channel.
    assert trio_cable.periodically.__module__ == "trio_cable"
    assert trio_cable.rescue_from.__module__ == "trio_cable"
    # The client's classes are reached as trio_cable.client.X only.
    for name in (
        "Message",
        "Subscription",
        "CableClient",
        "open_cable_client",
        "ActionFailed",
        "CallTimeout",
    ):
        assert name not in top, name
        assert name in trio_cable.client.__all__


def test_no_name_means_two_things() -> None:
    """A name exported by two public modules is the same object in both."""
    owners: dict[str, tuple[str, object]] = {}
    clashes = []
    for module_name in PUBLIC:
        module = public(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if name in owners and owners[name][1] is not obj:
                clashes.append((name, owners[name][0], module_name))
            owners.setdefault(name, (module_name, obj))
    assert clashes == []


def test_errors_are_one_family() -> None:
    """Every exception class exported anywhere is a CableError."""
    strays = []
    for module_name in PUBLIC:
        module = public(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and not issubclass(obj, trio_cable.CableError)
            ):
                strays.append(f"{module_name}.{name}")
    assert strays == []
