"""PySide6 must not leak references to None/True/False, and the guard catches a build that does."""

from __future__ import annotations

import ctypes
import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QLabel

from rlhf_desktop.runtime import compat


class Emitter(QObject):
    value = Signal(object)


def test_installed_pyside_keeps_reference_counts(qapp: QApplication) -> None:
    """PySide6 6.12.0 on Python 3.11 failed this: -1 reference to None per call."""
    label = QLabel("x")
    emitter = Emitter()
    emitter.value.connect(lambda v: None)
    calls = {
        "setText": lambda: label.setText("y"),
        "show": label.show,
        "update": label.update,
        "processEvents": qapp.processEvents,
        "emit(None)": lambda: emitter.value.emit(None),
        "emit(True)": lambda: emitter.value.emit(True),
    }
    for name, call in calls.items():
        before = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
        for _ in range(2000):
            call()
        after = (sys.getrefcount(None), sys.getrefcount(True), sys.getrefcount(False))
        lost = [b - a for b, a in zip(before, after, strict=True)]
        assert max(lost) < 100, f"{name} lost references to None/True/False: {lost}"
    label.deleteLater()


def test_guard_finds_nothing_on_a_sound_build(qapp: QApplication) -> None:
    assert compat.guard_singleton_refcounts() is False


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_guard_reserves_references_when_a_call_leaks() -> None:
    decref = ctypes.pythonapi.Py_DecRef
    decref.argtypes = [ctypes.py_object]
    decref.restype = None
    before = sys.getrefcount(None)

    def leaky() -> None:  # what a broken binding does on every call
        decref(None)

    assert compat.leaked_none_refs(leaky, 8) == 8
    assert compat.guard_singleton_refcounts(leaky) is True
    assert sys.getrefcount(None) > before + compat.RESERVE // 2
    assert sys.getrefcount(True) > compat.RESERVE // 2
