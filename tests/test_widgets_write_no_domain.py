"""Widgets write no domain object: a turn's state changes only in services (the turn
lifecycle, the labeling service), and the widgets render what they publish.

An AST check over every module under ``rlhf_desktop/ui``: no assignment (plain,
augmented, annotated, to a slice, or ``setattr`` with a literal name) to an attribute named
like a field of ``Turn``, ``Candidate`` or ``Conversation`` on anything but ``self``. The
check is by name, so a widget's own attribute must not borrow a domain field's name on
another object either (``widget.messages = ...`` is refused: what a turn sent belongs to
the lifecycle's snapshot). It is shown failing on planted violations.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from rlhf_desktop import domain

UI = Path(__file__).resolve().parent.parent / "rlhf_desktop" / "ui"
DOMAIN_FIELDS = frozenset(f.name for cls in (domain.Turn, domain.Candidate, domain.Conversation)
                          for f in dataclasses.fields(cls))


def _written(target: ast.expr) -> list[ast.Attribute]:
    """The attributes an assignment target writes: ``x.f =``, ``x.f[...] =``, ``a, x.f =``."""
    if isinstance(target, ast.Attribute):
        return [target]
    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute):
        return [target.value]
    if isinstance(target, ast.Tuple | ast.List):
        return [a for element in target.elts for a in _written(element)]
    if isinstance(target, ast.Starred):
        return _written(target.value)
    return []


def domain_writes(source: str, name: str = "<source>") -> list[str]:
    """``file:line target`` for each write to a domain field on something other than self."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "setattr" and len(node.args) >= 2
              and isinstance(node.args[1], ast.Constant)
              and node.args[1].value in DOMAIN_FIELDS
              and ast.unparse(node.args[0]) != "self"):
            found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
        for target in targets:
            for attr in _written(target):
                if attr.attr in DOMAIN_FIELDS and ast.unparse(attr.value) != "self":
                    found.append(f"{name}:{node.lineno} {ast.unparse(target)}")
    return found


def test_no_widget_assigns_to_a_field_of_a_domain_object() -> None:
    modules = sorted(UI.rglob("*.py"))
    assert len(modules) > 20  # the check reads the real ui package
    found = [hit for path in modules
             for hit in domain_writes(path.read_text(encoding="utf-8"),
                                      str(path.relative_to(UI.parent)))]
    assert found == [], "widgets write domain objects (ask a service instead):\n" + \
        "\n".join(found)


def test_the_check_finds_planted_writes_and_lets_a_widget_set_its_own_attributes() -> None:
    planted = '''
def undo(widget, turn, cand):
    turn.chosen_candidate_id = None
    turn.label_kind, turn.ranked_candidate_ids = None, ()
    turn.candidates[:] = []
    cand.position += 1
    widget.turn.blind = True
    setattr(turn, "skipped", True)
    widget.messages = []

class Card:
    def __init__(self):
        self.text = ""
        self.position: int = 0
        self.edit_button = None
        setattr(self, "index", 3)
'''
    found = domain_writes(planted)
    written = sorted(hit.split(" ", 1)[1] for hit in found)
    assert written == sorted([
        "turn.chosen_candidate_id", "(turn.label_kind, turn.ranked_candidate_ids)",
        "(turn.label_kind, turn.ranked_candidate_ids)", "turn.candidates[:]",
        "cand.position", "widget.turn.blind", "setattr(turn, 'skipped', True)",
        "widget.messages"])
