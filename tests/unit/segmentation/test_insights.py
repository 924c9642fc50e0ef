"""Insights on SQLite and in pure numpy: micro-segments (clustering separates two behaviour groups,
labels the valuable one, is reproducible, bounded by the sample cap, refuses too few customers) and
playbooks (validation paths, evaluation path, the learned tree reproducing a simple rule)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

import services.segmentation.segments.models  # noqa: F401  (registers the segment tables)
from services.segmentation.insights import clusters, playbooks, service
from services.segmentation.insights.models import ClusterAssignment
from services.segmentation.insights.schemas import ClusterRunIn, PlaybookIn, PlaybookLearnIn
from services.segmentation.models import MESSAGING, CustomerFeatures, metadata
from services.segmentation.segments import rules
from services.segmentation.value.models import CustomerValue
from shared.db import create_engine, session_factory
from shared.errors import DomainError, InvalidInput, NotFound
from shared.uow import UnitOfWorkFactory

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

TREE: dict[str, Any] = {
    "condition": {"field": "days_since_last_purchase", "op": ">", "value": 90},
    "label": "Lapsing?",
    "then": {
        "condition": {"field": "net_spend_minor", "op": ">=", "value": 50_000},
        "then": {"action": "retention_call", "params": {"priority": "high"}},
        "else": {"action": "win_back_offer", "params": {"discount_percent": 15}},
    },
    "else": {
        "condition": {"field": "open_complaints", "op": ">", "value": 0},
        "then": {"action": "resolve_complaint_first"},
        "else": {"action": "no_action"},
    },
}


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.uow = UnitOfWorkFactory(session_factory(self.engine), MESSAGING, "/crm/segmentation")

    async def customers(self, rows: list[dict[str, Any]]) -> None:
        async with self.uow() as uow:
            await uow.session.execute(insert(CustomerFeatures), rows)
            await uow.commit()

    async def values(self, rows: list[dict[str, Any]]) -> None:
        async with self.uow() as uow:
            await uow.session.execute(insert(CustomerValue), rows)
            await uow.commit()

    async def assignments(self, run_id: str) -> dict[str, int]:
        async with self.uow() as uow:
            rows = await uow.session.execute(
                select(ClusterAssignment.customer_id, ClusterAssignment.cluster).where(
                    ClusterAssignment.run_id == run_id
                )
            )
            return {c: k for c, k in rows}


def feature_row(customer_id: str, **values: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "updated_at": NOW,
        "erased": False,
        "registered_at": NOW - timedelta(days=400),
        "currency": "EUR",
        "channel_count": 1,
        "complaint_count": 0,
        "purchase_count": 1,
    } | values


def two_groups() -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """12 valuable customers (net spend 200,000 each: 2 × 100,000 or 4 × 50,000, bought in the last
    two weeks) and 24 casual ones (one purchase of 1,000, 150 to 265 days ago). Spend is constant
    inside each group, so it is the feature that separates them most."""
    rows: list[dict[str, Any]] = []
    vips = [f"vip-{i:02d}" for i in range(12)]
    casual = [f"casual-{i:02d}" for i in range(24)]
    for i, customer in enumerate(vips):
        count = 2 if i % 2 else 4
        rows.append(
            feature_row(
                customer,
                purchase_count=count,
                total_spend_minor=200_000,
                net_spend_minor=200_000,
                average_order_minor=200_000 // count,
                first_purchase_at=NOW - timedelta(days=300),
                last_purchase_at=NOW - timedelta(days=i),
            )
        )
    for i, customer in enumerate(casual):
        last = NOW - timedelta(days=150 + 5 * i)
        rows.append(
            feature_row(
                customer,
                total_spend_minor=1_000,
                net_spend_minor=1_000,
                average_order_minor=1_000,
                first_purchase_at=last,
                last_purchase_at=last,
            )
        )
    return rows, vips, casual


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Db]:
    database = Db(f"sqlite+aiosqlite:///{tmp_path / 'insights.db'}")
    async with database.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield database
    await database.engine.dispose()


@pytest.fixture
async def groups(db: Db) -> tuple[list[str], list[str]]:
    rows, vips, casual = two_groups()
    # someone erased and someone paying in another currency are never clustered
    rows.append(feature_row("erased-1", erased=True, net_spend_minor=5_000, last_purchase_at=NOW))
    rows.append(feature_row("usd-1", currency="USD", net_spend_minor=9_000, last_purchase_at=NOW))
    await db.customers(rows)
    return vips, casual


# ---- clusters -------------------------------------------------------------------------------------


async def test_clustering_separates_the_groups_and_labels_the_valuable_one(
    db: Db, groups: tuple[list[str], list[str]]
) -> None:
    vips, casual = groups
    run = await service.run_clusters(db.uow(), ClusterRunIn(k=2), now=NOW)
    assert (run.k, run.population, run.currency) == (2, 36, "EUR")
    assert run.params["excluded_other_currencies"] == 1
    assert run.features == list(clusters.DEFAULT_FEATURES)  # nobody answered a survey
    assert run.sizes == [24, 12]  # renumbered largest first
    assigned = await db.assignments(run.id)
    assert set(assigned) == set(vips) | set(casual)
    assert {assigned[c] for c in vips} == {1}
    assert {assigned[c] for c in casual} == {0}

    valuable, everyday = run.clusters[1], run.clusters[0]
    assert valuable.label.startswith("High spend")
    assert valuable.label.endswith("— 33% of customers")
    assert "recent" in valuable.label or "frequent" in valuable.label
    assert everyday.label.startswith("Low spend")
    spend = valuable.features["monetary_minor"]
    assert (spend.mean, spend.median, spend.unit) == (200_000, 200_000, "minor units")
    assert spend.population_mean == pytest.approx((12 * 200_000 + 24 * 1_000) / 36, abs=0.01)
    assert spend.z == pytest.approx(2**0.5, abs=1e-3)  # two values, a third of customers on top
    assert valuable.features["recency_days"].mean == pytest.approx(5.5)
    assert "Net spend averages 200,000 minor units" in valuable.description
    assert "EUR" in valuable.description
    assert run.silhouette is not None
    assert run.silhouette > 0.5

    mine = await service.customer_cluster(db.uow(), vips[0], None)
    assert (mine.cluster, mine.run_id, mine.label) == (1, run.id, valuable.label)
    with pytest.raises(NotFound):
        await service.customer_cluster(db.uow(), "usd-1", None)
    latest = await service.latest_run(db.uow())
    assert latest.model_dump() == run.model_dump()


async def test_same_seed_same_assignments_and_the_sample_cap_bounds_the_fit(
    db: Db, groups: tuple[list[str], list[str]]
) -> None:
    body = ClusterRunIn(k_range=[2, 5], random_state=7)
    first = await service.run_clusters(db.uow(), body, now=NOW)
    second = await service.run_clusters(db.uow(), body, now=NOW)
    assert first.id != second.id
    assert await db.assignments(first.id) == await db.assignments(second.id)
    assert [s.k for s in first.k_scores] == [2, 3, 4, 5]
    best = max(s.silhouette for s in first.k_scores if s.silhouette is not None)
    assert first.silhouette == best
    # whatever k won, no cluster mixes the valuable and the casual customers
    vips, casual = groups
    assigned = await db.assignments(first.id)
    assert not {assigned[c] for c in vips} & {assigned[c] for c in casual}

    small = await service.run_clusters(db.uow(), ClusterRunIn(k=2, sample_cap=20, random_state=3), now=NOW)
    assert (small.sample_size, small.population) == (20, 36)
    assert len(await db.assignments(small.id)) == 36  # fitted on 20, everyone assigned
    assigned = await db.assignments(small.id)
    assert len({assigned[c] for c in vips}) == 1
    assert {assigned[c] for c in vips} != {assigned[c] for c in casual}


async def test_too_few_customers_and_bad_features_are_422s_naming_the_field(db: Db) -> None:
    rows, _, _ = two_groups()
    await db.customers(rows[:4])
    with pytest.raises(InvalidInput) as info:
        await service.run_clusters(db.uow(), ClusterRunIn(k=2), now=NOW)
    assert info.value.errors[0].field == "body.k"
    assert "too few customers for k=2: 4" in info.value.errors[0].message
    with pytest.raises(InvalidInput) as info:
        await service.run_clusters(db.uow(), ClusterRunIn(currency="JPY"), now=NOW)
    assert info.value.errors[0].field == "body.k_range"
    assert "no customers whose main currency is JPY" in info.value.errors[0].message
    with pytest.raises(DomainError) as problem:
        await service.run_clusters(db.uow(), ClusterRunIn(features=["recency_days", "monetary"]), now=NOW)
    [error] = problem.value.errors
    assert error.field == "body.features.1"
    assert "monetary_minor" in error.message
    with pytest.raises(InvalidInput) as info:
        await service.run_clusters(db.uow(), ClusterRunIn(k=3, k_range=[2, 4]), now=NOW)
    assert info.value.errors[0].field == "body.k_range"
    with pytest.raises(InvalidInput) as info:
        await service.run_clusters(db.uow(), ClusterRunIn(k_range=[5, 3]), now=NOW)
    assert info.value.errors[0].field == "body.k_range.1"


def test_reservoir_is_bounded_uniform_and_seeded() -> None:
    def draw(seed: int) -> list[int]:
        reservoir = clusters.Reservoir(100, seed)
        for i in range(10_000):
            reservoir.offer(i)
        assert reservoir.seen == 10_000
        return list(reservoir.items)

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    sample = draw(1)
    assert len(sample) == len(set(sample)) == 100
    assert 3_000 < np.mean(sample) < 7_000  # drawn from the whole stream, not its head


def test_labels_compare_the_centre_with_the_population() -> None:
    z = {"monetary_minor": 1.9, "frequency": 1.2, "recency_days": -0.8, "tenure_days": 0.1, "complaints": 0.6}
    assert clusters.label(z, 0.04) == "High spend, frequent, recent — 4% of customers"
    assert clusters.label({"monetary_minor": 0.2}, 0.5) == "Average on every feature — 50% of customers"
    assert clusters.label({"recency_days": 1.0}, 0.004).endswith("— 0.4% of customers")


# ---- playbooks: validation and evaluation ------------------------------------------------------------


def tree_errors(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(playbooks.TreeErrors) as info:
        playbooks.parse(raw, "body.tree", segment_exists=set[str]().__contains__)
    return info.value.errors


def test_a_valid_tree_parses_with_node_names() -> None:
    root = playbooks.parse(TREE, "body.tree")
    assert [b.node for b in playbooks.branches(root)] == ["tree", "tree.then", "tree.else"]
    leaf, steps = playbooks.decide(root, {"tree": True, "tree.then": False})
    assert (leaf.node, leaf.action, leaf.params) == (
        "tree.then.else",
        "win_back_offer",
        {"discount_percent": 15},
    )
    assert [(s.branch.node, s.result) for s in steps] == [("tree", True), ("tree.then", False)]


def test_tree_errors_name_exact_paths() -> None:
    bad = {
        "condition": {"field": "purchase_count", "op": ">", "value": 1},
        "then": {
            "condition": {"field": "net_spend_minor", "op": ">=", "value": 1},
            "then": {"action": "call"},
            "else": {
                "condition": {"field": "spend", "op": ">", "value": 3},
                "then": {"action": "Bad Action"},
                "else": {"action": "ok", "params": [1]},
            },
        },
    }
    errors = dict(tree_errors(bad))
    assert set(errors) == {
        "body.tree.then.else.condition.field",
        "body.tree.then.else.then.action",
        "body.tree.then.else.else.params",
        "body.tree.else",
    }
    assert "unknown field 'spend'" in errors["body.tree.then.else.condition.field"]
    assert "missing" in errors["body.tree.else"]
    [(path, message)] = tree_errors(
        {"condition": {"in_segment": "nope"}, "then": {"action": "a"}, "else": {"action": "b"}}
    )
    assert path == "body.tree.condition.in_segment"  # the rule language's own paths, under the tree's
    assert message == "no segment 'nope'"
    assert tree_errors(
        {"condition": {"field": "purchase_count", "op": ">", "value": 1}, "then": {"action": "a"}, "else": {}}
    ) == [("body.tree.else", 'a node needs "condition" (with "then" and "else") or "action"')]
    [(path, _)] = tree_errors({"action": "a", "then": {"action": "b"}})
    assert path == "body.tree.then"
    [(path, _)] = tree_errors(
        {
            "condition": {"field": "last_csat", "op": ">=", "value": "4"},
            "then": {"action": "a"},
            "else": {"action": "b"},
        }
    )
    assert path == "body.tree.condition.value"


async def test_next_best_action_walks_the_tree_with_observed_values(db: Db) -> None:
    await db.customers(
        [
            feature_row("lapsed-big", net_spend_minor=80_000, last_purchase_at=NOW - timedelta(days=120)),
            feature_row("lapsed-small", net_spend_minor=2_000, last_purchase_at=NOW - timedelta(days=95)),
            feature_row("recent-unhappy", net_spend_minor=2_000, last_purchase_at=NOW, open_complaints=2),
            feature_row("prospect", purchase_count=0, currency=None),
        ]
    )
    created = await service.create_playbook(db.uow(), PlaybookIn(name="Retention", tree=TREE))
    assert (created.version, created.source) == (1, "staff")
    assert created.actions == ["no_action", "resolve_complaint_first", "retention_call", "win_back_offer"]

    async def nba(customer_id: str) -> Any:
        return await service.next_best_action(db.uow(), customer_id, created.id, now=NOW)

    big = await nba("lapsed-big")
    assert (big.action, big.params, big.leaf) == ("retention_call", {"priority": "high"}, "tree.then.then")
    assert [(s.node, s.observed, s.result) for s in big.path] == [
        ("tree", {"days_since_last_purchase": 120}, True),
        ("tree.then", {"net_spend_minor": 80_000}, True),
    ]
    assert big.path[0].label == "Lapsing?"
    assert big.path[0].condition == TREE["condition"]
    small = await nba("lapsed-small")
    assert (small.action, small.leaf) == ("win_back_offer", "tree.then.else")
    unhappy = await nba("recent-unhappy")
    assert unhappy.action == "resolve_complaint_first"
    assert [(s.observed, s.result) for s in unhappy.path] == [
        ({"days_since_last_purchase": 0}, False),
        ({"open_complaints": 2}, True),
    ]
    # never bought: "days since" is missing, and a comparison on a missing value is false
    prospect = await nba("prospect")
    assert prospect.action == "no_action"
    assert prospect.path[0].observed == {"days_since_last_purchase": None}
    with pytest.raises(NotFound):
        await nba("nobody")

    replaced = await service.replace_playbook(
        db.uow(), created.id, PlaybookIn(name="Retention", tree={"action": "no_action"})
    )
    assert replaced.version == 2
    assert (await nba("lapsed-big")).path == []


# ---- playbooks: learning ------------------------------------------------------------------------------


def test_a_learned_tree_reproduces_a_threshold_rule_in_original_units() -> None:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    spend = rng.integers(0, 100_000, 400).astype(float)
    spend[:5] = [49_990, 49_999, 50_000, 50_001, 50_007]
    complaints = rng.integers(0, 4, 400).astype(float)
    x = np.column_stack([spend, complaints])
    y = spend >= 50_000
    estimator = DecisionTreeClassifier(max_depth=3, random_state=0).fit(playbooks.impute_for_tree(x), y)
    specs = [rules.FIELDS["net_spend_minor"], rules.FIELDS["complaint_count"]]
    actions = {
        True: playbooks.ActionSpec("vip_invitation", {"tier": "gold"}),
        False: playbooks.ActionSpec("no_action", {}),
    }
    tree = playbooks.learned_tree(estimator, x, y, specs, actions, "valuable")
    assert tree["condition"] == {"field": "net_spend_minor", "op": "<=", "value": 49_999}
    assert tree["then"]["action"] == "no_action"
    assert tree["else"] == {
        "action": "vip_invitation",
        "params": {"tier": "gold"},
        "label": f"learned: {int(y.sum())} customers in training, 100% valuable",
    }
    playbooks.parse(tree)  # an ordinary, valid playbook


def test_a_learned_split_on_missing_values_becomes_is_not_null() -> None:
    from sklearn.tree import DecisionTreeClassifier

    csat = np.array([1, 2, 3, 4, 5, np.nan, np.nan, np.nan, np.nan, np.nan], dtype=float)
    y = np.isnan(csat)  # the target: never answered a survey
    x = csat[:, None]
    estimator = DecisionTreeClassifier(max_depth=2, random_state=0).fit(playbooks.impute_for_tree(x), y)
    actions = {True: playbooks.ActionSpec("send_survey", {}), False: playbooks.ActionSpec("no_action", {})}
    tree = playbooks.learned_tree(estimator, x, y, [rules.FIELDS["last_csat"]], actions, "silent")
    assert tree["condition"] == {"field": "last_csat", "op": "is_not_null"}
    assert (tree["then"]["action"], tree["else"]["action"]) == ("no_action", "send_survey")


async def test_learning_churn_finds_the_lapse_rule_and_evaluates_like_it(db: Db) -> None:
    rows: list[dict[str, Any]] = []
    lapsed: dict[str, bool] = {}
    for i in range(60):
        customer = f"c-{i:02d}"
        days = 3 * i + 1  # 1 … 178 days since the last purchase
        rows.append(
            feature_row(
                customer,
                purchase_count=1 + i % 4,
                net_spend_minor=1_000 * (1 + (i * 7) % 13),
                last_purchase_at=NOW - timedelta(days=days, hours=1),
            )
        )
        lapsed[customer] = days > 90
    await db.customers(rows)
    await db.values(
        [
            {"customer_id": c, "lapsed": gone, "active": not gone, "risk_reasons": {}, "updated_at": NOW}
            for c, gone in lapsed.items()
        ]
    )
    body = PlaybookLearnIn(
        name="Churn (learned)",
        target="churned",
        features=["days_since_last_purchase", "purchase_count", "net_spend_minor"],
        actions={"true": {"action": "retention_call", "params": {"priority": "high"}}, "false": "no_action"},
        max_depth=3,
        min_samples_leaf=1,
    )
    learned = await service.learn_playbook(db.uow(), body, now=NOW)
    assert learned.playbook is not None
    assert learned.playbook.source == "learned"
    assert learned.training["accuracy"] == 1.0
    assert learned.training["samples"] == learned.training["population"] == 60
    assert list(learned.training["importances"]) == ["days_since_last_purchase"]
    # customers at 88 and 91 days: the readable threshold sits between them, in whole days
    assert learned.tree["condition"] == {"field": "days_since_last_purchase", "op": "<=", "value": 89}
    for customer, gone in lapsed.items():
        decided = await service.next_best_action(db.uow(), customer, learned.playbook.id, now=NOW)
        assert decided.action == ("retention_call" if gone else "no_action"), customer

    with pytest.raises(InvalidInput) as info:
        await service.learn_playbook(
            db.uow(),
            body.model_copy(
                update={"population": {"field": "days_since_last_purchase", "op": "<", "value": 50}}
            ),
            now=NOW,
        )
    assert info.value.errors[0].field == "body.target"  # nobody lapsed among them: nothing to learn
    with pytest.raises(DomainError) as problem:
        await service.learn_playbook(
            db.uow(), body.model_copy(update={"features": ["last_purchase_at", "purchases"]}), now=NOW
        )
    assert [e.field for e in problem.value.errors] == ["body.features.0", "body.features.1"]
    assert "days_since_last_purchase" in problem.value.errors[0].message
    with pytest.raises(InvalidInput) as info:
        await service.learn_playbook(db.uow(), body.model_copy(update={"target": "segment"}), now=NOW)
    assert info.value.errors[0].field == "body.segment_id"
