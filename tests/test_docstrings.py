"""Every public class, function and method of the library (models/, caracal_viz/) says what it
does: a docstring of its own (not one inherited from a base class, nor the signature that
dataclasses write), found by walking the modules with inspect."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import caracal_viz
import models


def _modules():
    for pkg in (models, caracal_viz):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_"):
                continue
            try:
                yield importlib.import_module(f"{pkg.__name__}.{info.name}")
            except ModuleNotFoundError as e:
                # CUDA-only kernels (caracal_viz/influence_triton.py): CPU builds of torch ship no
                # Triton, so the module is walked where it imports (the GPU machine), nowhere else
                if e.name != "triton":
                    raise


def _own_doc(obj) -> str:
    """obj's own docstring ("" when it has none, or only the one @dataclass makes up)."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    doc = (doc or "").strip()
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}("):
        return ""
    return doc


def _methods(cls):
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        if inspect.isfunction(member):
            yield name, member


def undocumented() -> list[str]:
    """The qualified names of the public API without a docstring."""
    missing = []
    for mod in _modules():
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if obj.__module__ != mod.__name__:  # imported, documented where it is defined
                continue
            if not _own_doc(obj):
                missing.append(f"{mod.__name__}.{name}")
            if inspect.isclass(obj):
                missing += [f"{mod.__name__}.{name}.{m}" for m, fn in _methods(obj) if not _own_doc(fn)]
    return missing


def test_every_public_class_function_and_method_has_a_docstring():
    missing = undocumented()
    assert not missing, f"{len(missing)} without a docstring: {', '.join(missing)}"


def test_the_walk_sees_what_it_must_check():
    """The walk reaches the models' classes, their methods and a page helper module (a walk that
    saw nothing would pass the test above vacuously), and it catches a missing docstring."""
    seen = {f"{m.__name__}.{n}" for m in _modules() for n in vars(m)}
    assert {"models.lm.ByteLM", "models.mhf.MultiHeadFourier", "caracal_viz.spectral.group_delay"} <= seen

    class Bare:
        def method(self):
            pass

    assert not _own_doc(Bare) and [n for n, f in _methods(Bare) if not _own_doc(f)] == ["method"]
