"""Next-best-action playbooks: an explainable decision tree over a customer's features.

A playbook's ``tree`` is JSON made of two kinds of nodes:

Decision
    ``{"condition": <rule>, "then": <node>, "else": <node>, "label": "optional note"}``

    ``condition`` is a rule of the segment rule language (`services.segmentation.segments.rules`):
    usually one comparison such as ``{"field": "days_since_last_purchase", "op": ">", "value": 90}``,
    but ``all`` / ``any`` / ``not``, time windows and ``in_segment`` work too, with the same meaning
    (a comparison on a missing value is false).
Action (a leaf)
    ``{"action": "win_back_offer", "params": {"discount_percent": 15}, "label": "optional note"}``

    ``action`` is a lower-case identifier (``[a-z][a-z0-9_]*``, at most 64 characters); ``params`` an
    optional object handed to whatever carries the action out.

Nodes are named by their path from the root: ``tree``, ``tree.then``, ``tree.else.then`` …
Validation collects every fault as ``(path, message)`` with the full path from the request body
(``body.tree.then.else.condition.field: unknown field 'spend'; did you mean …``).

`learned_tree` turns a fitted `sklearn.tree.DecisionTreeClassifier` into the same JSON, with
thresholds in original units recomputed from the training rows (integers stay integers), so a learned
playbook reads, edits and evaluates exactly like a hand-written one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from services.segmentation.segments import rules

ACTION = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TREE_DEPTH = 12
MAX_TREE_NODES = 255
MAX_LABEL = 200
BRANCH_KEYS = ("condition", "then", "else", "label")
LEAF_KEYS = ("action", "params", "label")


@dataclass(frozen=True, slots=True)
class Leaf:
    node: str
    action: str
    params: dict[str, Any]
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Branch:
    node: str
    condition: rules.Rule
    raw: Any  # the condition as written
    then: Node
    otherwise: Node
    label: str | None = None


Node = Leaf | Branch


def branches(node: Node) -> Iterator[Branch]:
    """Every decision node, root first."""
    if isinstance(node, Branch):
        yield node
        yield from branches(node.then)
        yield from branches(node.otherwise)


def compared_fields(rule: rules.Rule) -> list[rules.FieldSpec]:
    """The catalogue fields a condition compares, in order, once each."""
    seen: dict[str, rules.FieldSpec] = {}
    for part in rules.walk(rule):
        if isinstance(part, rules.Compare):
            seen.setdefault(part.field.name, part.field)
    return list(seen.values())


@dataclass(frozen=True, slots=True)
class Step:
    branch: Branch
    result: bool


def decide(root: Node, results: Mapping[str, bool]) -> tuple[Leaf, list[Step]]:
    """Follow the tree with each decision's result (by node name) to the chosen action."""
    steps: list[Step] = []
    node = root
    while isinstance(node, Branch):
        result = bool(results.get(node.node, False))
        steps.append(Step(node, result))
        node = node.then if result else node.otherwise
    return node, steps


# ---- parsing --------------------------------------------------------------------------------------


class TreeErrors(Exception):
    """The tree is invalid; `errors` holds (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))
        self.errors = errors


class _Parser:
    def __init__(self, segment_exists: Callable[[str], bool] | None) -> None:
        self.errors: list[tuple[str, str]] = []
        self.nodes = 0
        self.segment_exists = segment_exists

    def fail(self, path: str, message: str) -> None:
        if len(self.errors) < rules.MAX_ERRORS:
            self.errors.append((path, message))

    def label(self, raw: Mapping[str, Any], path: str) -> str | None:
        value = raw.get("label")
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_LABEL:
            self.fail(f"{path}.label", f"expected a string of at most {MAX_LABEL} characters")
            return None
        return value

    def node(self, raw: Any, path: str, name: str, depth: int) -> Node | None:
        self.nodes += 1
        if self.nodes == MAX_TREE_NODES + 1:
            self.fail(path, f"a playbook has at most {MAX_TREE_NODES} nodes")
        if depth > MAX_TREE_DEPTH:
            self.fail(path, f"a playbook nests at most {MAX_TREE_DEPTH} decisions deep")
            return None
        if not isinstance(raw, dict):
            self.fail(path, f"expected a node object, got {rules._type_name(raw)}")
            return None
        if "action" in raw and "condition" in raw:
            self.fail(f"{path}.action", "a node is either a decision (condition/then/else) or an action")
            return None
        if "action" in raw:
            return self.leaf(raw, path, name)
        if "condition" in raw:
            return self.branch(raw, path, name, depth)
        first = next(iter(raw), None)
        hint = rules._suggest(first, (*BRANCH_KEYS, *LEAF_KEYS)) if isinstance(first, str) else ""
        self.fail(
            path,
            'a node needs "condition" (with "then" and "else") or "action"' + hint,
        )
        return None

    def leaf(self, raw: dict[str, Any], path: str, name: str) -> Node | None:
        ok = True
        for key in raw:
            if key not in LEAF_KEYS:
                self.fail(f"{path}.{key}", f"unexpected key in an action; allowed: {', '.join(LEAF_KEYS)}")
                ok = False
        action = raw["action"]
        if not isinstance(action, str) or not ACTION.match(action):
            shown = repr(action) if isinstance(action, str) else rules._type_name(action)
            self.fail(
                f"{path}.action",
                f"expected an action name (lower case, digits and _, starting with a letter), got {shown}",
            )
            ok = False
        params = raw.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            self.fail(f"{path}.params", f"expected an object, got {rules._type_name(params)}")
            ok = False
        label = self.label(raw, path)
        if not ok:
            return None
        return Leaf(name, action, dict(params), label)

    def branch(self, raw: dict[str, Any], path: str, name: str, depth: int) -> Node | None:
        ok = True
        for key in raw:
            if key not in BRANCH_KEYS:
                self.fail(
                    f"{path}.{key}",
                    f"unexpected key in a decision; allowed: {', '.join(BRANCH_KEYS)}"
                    + rules._suggest(key, BRANCH_KEYS),
                )
                ok = False
        condition: rules.Rule | None = None
        try:
            condition = rules.parse(raw["condition"], f"{path}.condition", segment_exists=self.segment_exists)
        except rules.RuleErrors as exc:
            for p, m in exc.errors:
                self.fail(p, m)
            ok = False
        children: list[Node | None] = []
        for key in ("then", "else"):
            if key not in raw:
                self.fail(f"{path}.{key}", f'missing; a decision needs "then" and "else" (the {key} branch)')
                ok = False
                children.append(None)
            else:
                children.append(self.node(raw[key], f"{path}.{key}", f"{name}.{key}", depth + 1))
        label = self.label(raw, path)
        then, otherwise = children
        if not ok or condition is None or then is None or otherwise is None:
            return None
        return Branch(name, condition, raw["condition"], then, otherwise, label)


def parse(raw: Any, path: str = "tree", *, segment_exists: Callable[[str], bool] | None = None) -> Node:
    """Check a playbook tree and build it, or raise `TreeErrors` naming every fault's path. Node names
    start at ``tree`` whatever `path` (the prefix of error paths, e.g. ``body.tree``) is."""
    parser = _Parser(segment_exists)
    node = parser.node(raw, path, "tree", 0)
    if parser.errors or node is None:
        raise TreeErrors(parser.errors or [(path, "invalid playbook tree")])
    return node


# ---- learning -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionSpec:
    action: str
    params: dict[str, Any]

    def to_json(self, label: str) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.params:
            out["params"] = self.params
        out["label"] = label
        return out


def sentinel(column: NDArray[np.float64]) -> float:
    """A value above every present value of a column: missing values are imputed with it, so that a
    learned split `x <= t` sends them to the ``else`` side, as a comparison on a missing value is
    false in the rule language."""
    present = column[~np.isnan(column)]
    top = float(np.abs(present).max()) if present.size else 0.0
    return top * 4 + 10


def impute_for_tree(x: NDArray[np.float64]) -> NDArray[np.float64]:
    out = x.copy()
    for j in range(out.shape[1]):
        missing = np.isnan(out[:, j])
        if missing.any():
            out[missing, j] = sentinel(out[:, j])
    return out


def _threshold(spec: rules.FieldSpec, low: float, high: float) -> int | float:
    """A readable value t with low <= t < high (low: the largest value sent left, high: the smallest
    sent right)."""
    middle = (low + high) / 2
    if spec.type is rules.FieldType.INTEGER:
        return math.floor(middle)
    for digits in range(0, 10):
        rounded = round(middle, digits)
        if low <= rounded < high:
            return float(rounded)
    return float(low)


@dataclass(slots=True)
class _Counted:
    json: dict[str, Any]
    leaf: bool | None  # the class of a leaf, None for a decision
    samples: int
    positives: int


def learned_tree(
    estimator: Any,
    x: NDArray[np.float64],
    y: NDArray[np.bool_],
    specs: Sequence[rules.FieldSpec],
    actions: Mapping[bool, ActionSpec],
    target: str,
) -> dict[str, Any]:
    """The fitted tree as playbook JSON. `x` holds the training rows in original units (NaN where
    missing; the estimator was fitted on `impute_for_tree(x)`), `y` their labels. Sibling leaves
    choosing the same action are merged, so the tree only branches where the action changes."""
    tree = estimator.tree_
    fitted = impute_for_tree(x)
    membership = estimator.decision_path(fitted).tocsc()
    classes = [bool(c) for c in estimator.classes_]

    def rows(node: int) -> NDArray[np.int64]:
        start, end = membership.indptr[node], membership.indptr[node + 1]
        result: NDArray[np.int64] = membership.indices[start:end]
        return result

    def build(node: int) -> _Counted:
        mine = rows(node)
        samples, positives = len(mine), int(y[mine].sum())
        left, right = int(tree.children_left[node]), int(tree.children_right[node])
        if left == right:  # a leaf
            decided = classes[int(np.argmax(tree.value[node][0]))]
            share = positives / samples if samples else 0.0
            label = f"learned: {samples} customers in training, {share:.0%} {target}"
            return _Counted(actions[decided].to_json(label), decided, samples, positives)
        j = int(tree.feature[node])
        spec = specs[j]
        column = x[:, j]
        went_left, went_right = column[rows(left)], column[rows(right)]
        present_right = went_right[~np.isnan(went_right)]
        condition: dict[str, Any]
        if present_right.size == 0:  # the split separates missing values from present ones
            condition = {"field": spec.name, "op": "is_not_null"}
        elif spec.type is rules.FieldType.BOOLEAN:
            condition = {"field": spec.name, "op": "=", "value": False}
        else:
            low = float(np.nanmax(went_left))
            condition = {
                "field": spec.name,
                "op": "<=",
                "value": _threshold(spec, low, float(present_right.min())),
            }
        then, otherwise = build(left), build(right)
        if (
            then.leaf is not None
            and otherwise.leaf is not None
            and then.json.get("action") == otherwise.json.get("action")
            and then.json.get("params") == otherwise.json.get("params")
        ):
            share = positives / samples if samples else 0.0
            label = f"learned: {samples} customers in training, {share:.0%} {target}"
            merged = dict(then.json) | {"label": label}
            return _Counted(merged, then.leaf, samples, positives)
        return _Counted(
            {"condition": condition, "then": then.json, "else": otherwise.json}, None, samples, positives
        )

    return build(0).json
