"""The segment rule language: validation paths, SQL semantics on SQLite, batch and real-time membership."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update

import services.segmentation.segments.models  # noqa: F401  (registers the segment tables)
from services.segmentation.models import MESSAGING, CustomerFeatures, PurchaseFact, metadata
from services.segmentation.segments import compile as compiler
from services.segmentation.segments import rules, service
from services.segmentation.segments.models import Segment, SegmentHistory
from services.segmentation.segments.schemas import MembersUpload, PreviewIn, SegmentIn
from shared.db import create_engine, session_factory
from shared.errors import Conflict, InvalidInput
from shared.uow import UnitOfWorkFactory

NOW = datetime.now(UTC)


def errors_of(raw: Any, exists: set[str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(rules.RuleErrors) as info:
        rules.parse(raw, "body.rule", segment_exists=None if exists is None else exists.__contains__)
    return info.value.errors


# ---- validation ----------------------------------------------------------------------------------


def test_a_valid_rule_parses_into_its_tree() -> None:
    rule = rules.parse(
        {
            "all": [
                {"field": "net_spend_minor", "op": ">=", "value": 10000},
                {"purchases": {"within_days": 90, "at_least": 3, "channel": "web"}},
                {"not": {"field": "ladder_stage", "op": "in", "value": ["prospect", "customer"]}},
            ]
        }
    )
    assert isinstance(rule, rules.All)
    assert rule.rules[1] == rules.Window("purchases", 90, 3, None, (("channel", "web"),))
    assert rules.is_time_relative(rule)
    assert not rules.is_time_relative(rules.parse({"field": "multichannel", "op": "=", "value": True}))


def test_an_unknown_field_names_its_path_and_close_matches() -> None:
    [(path, message)] = errors_of(
        {
            "all": [
                {"field": "purchase_count", "op": ">", "value": 1},
                {"field": "net_spend", "op": ">", "value": 1},
            ]
        }
    )
    assert path == "body.rule.all.1.field"
    assert "unknown field 'net_spend'" in message
    assert "net_spend_minor" in message


def test_a_wrong_value_type_names_the_value() -> None:
    [(path, message)] = errors_of({"any": [{"field": "purchase_count", "op": ">=", "value": "3"}]})
    assert path == "body.rule.any.0.value"
    assert "expected an integer, got a string" in message
    [(path, _)] = errors_of({"field": "purchase_count", "op": "between", "value": [5, 2]})
    assert path == "body.rule.value"
    [(path, _)] = errors_of({"field": "ladder_stage", "op": "=", "value": "fan"})
    assert path == "body.rule.value"
    [(path, _)] = errors_of({"field": "multichannel", "op": "=", "value": 1})
    assert path == "body.rule.value"


def test_an_operator_that_does_not_fit_the_type_is_refused() -> None:
    [(path, message)] = errors_of({"not": {"field": "currency", "op": ">=", "value": "EUR"}})
    assert path == "body.rule.not.op"
    assert "= != in not_in".replace(" ", ", ") in message
    [(path, _)] = errors_of({"field": "purchase_count", "op": "is_null"})  # not nullable
    assert path == "body.rule.op"


def test_window_errors_name_the_window_key() -> None:
    errors = errors_of({"all": [{"purchases": {"within_days": 0, "at_least": 3, "chanel": "web"}}]})
    assert [p for p, _ in errors] == [
        "body.rule.all.0.purchases.chanel",
        "body.rule.all.0.purchases.within_days",
    ]
    [(path, _)] = errors_of({"spend": {"within_days": 30, "at_least": 100}})
    assert path == "body.rule.spend.currency"
    [(path, _)] = errors_of({"spend": {"within_days": 30, "at_least": 100, "currency": "eur"}})
    assert path == "body.rule.spend.currency"
    [(path, _)] = errors_of({"purchases": {"within_days": 30, "at_least": 5, "at_most": 2}})
    assert path == "body.rule.purchases.at_most"


def test_structural_errors() -> None:
    assert errors_of({"all": []}) == [("body.rule.all", "expected at least one rule")]
    [(path, _)] = errors_of({"all": [{"field": "purchase_count", "op": ">", "value": 1}], "any": []})
    assert path == "body.rule.any"
    [(path, message)] = errors_of({"alll": []})
    assert path == "body.rule.alll"
    assert "'all'" in message
    [(path, _)] = errors_of([1, 2])
    assert path == "body.rule"
    [(path, message)] = errors_of({"in_segment": "nope"}, exists={"other"})
    assert (path, message) == ("body.rule.in_segment", "no segment 'nope'")


def test_several_errors_are_reported_together() -> None:
    errors = errors_of(
        {"all": [{"field": "x", "op": "=", "value": 1}, {"field": "last_nps", "op": ">=", "value": "9"}]}
    )
    assert [p for p, _ in errors] == ["body.rule.all.0.field", "body.rule.all.1.value"]


def test_cycles_are_found_with_the_reference_path() -> None:
    rule = rules.parse({"all": [{"field": "purchase_count", "op": ">", "value": 0}, {"in_segment": "b"}]})
    graph = {"b": ["c"], "c": ["a"]}
    found = rules.find_cycle("a", rules.references(rule), lambda s: graph.get(s, []))
    assert found is not None
    ref, trail = found
    assert ref.path == "rule.all.1.in_segment"
    assert trail == ["a", "b", "c", "a"]
    assert rules.find_cycle("a", rules.references(rule), lambda s: {"b": ["c"]}.get(s, [])) is None


# ---- SQL semantics ------------------------------------------------------------------------------------


@pytest.fixture
async def uow_factory(tmp_path: Path) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'seg.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield UnitOfWorkFactory(session_factory(engine), MESSAGING, source="/crm/segmentation")
    await engine.dispose()


def customer(customer_id: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c.name: None for c in CustomerFeatures.__table__.columns}  # type: ignore[attr-defined]
    row |= {
        "customer_id": customer_id,
        "erased": False,
        "purchase_count": 0,
        "refund_count": 0,
        "total_spend_minor": 0,
        "refunded_minor": 0,
        "net_spend_minor": 0,
        "average_order_minor": 0,
        "channels": [],
        "channel_count": 0,
        "multichannel": False,
        "contact_count": 0,
        "complaint_count": 0,
        "open_complaints": 0,
        "unanswered_complaints": 0,
        "sla_breaches": 0,
        "updated_at": NOW,
    }
    row.update(values)
    return row


def purchase(
    n: int, customer_id: str, days_ago: float, total: int = 1000, currency: str = "EUR"
) -> dict[str, Any]:
    return {
        "purchase_id": f"p{n}",
        "customer_id": customer_id,
        "occurred_at": NOW - timedelta(days=days_ago),
        "currency": currency,
        "total_minor": total,
        "channel": "web",
    }


@pytest.fixture
async def people(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    async with uow_factory() as uow:
        await uow.session.execute(
            insert(CustomerFeatures),
            [
                customer(
                    "a",
                    net_spend_minor=50_000,
                    purchase_count=4,
                    last_purchase_at=NOW - timedelta(days=70),
                    channels=["web", "store"],
                    last_nps=3,
                    nps_category="detractor",
                    currency="EUR",
                ),
                customer(
                    "b",
                    net_spend_minor=5_000,
                    purchase_count=3,
                    last_purchase_at=NOW - timedelta(days=5),
                    channels=["web"],
                    currency="EUR",
                ),
                customer("c", net_spend_minor=0),
                customer("d", net_spend_minor=90_000, erased=True),
            ],
        )
        await uow.session.execute(
            insert(PurchaseFact),
            [
                purchase(1, "a", 70, 20_000),
                purchase(2, "a", 100),
                purchase(3, "a", 200),
                purchase(4, "a", 300),
                purchase(5, "b", 5),
                purchase(6, "b", 10),
                purchase(7, "b", 20, 3000, "USD"),
            ],
        )
        await uow.commit()
    return uow_factory


async def matches(factory: UnitOfWorkFactory, raw: dict[str, Any]) -> list[str]:
    rule = rules.parse(raw)
    async with factory() as uow:
        statement = compiler.matching(rule, now=NOW, dialect="sqlite")
        return sorted(await uow.session.scalars(statement))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"field": "net_spend_minor", "op": ">=", "value": 10000}, ["a"]),  # erased d never matches
        ({"field": "net_spend_minor", "op": "between", "value": [1, 60000]}, ["a", "b"]),
        ({"field": "last_nps", "op": "<=", "value": 6}, ["a"]),
        ({"not": {"field": "last_nps", "op": "<=", "value": 6}}, ["b", "c"]),  # null is "not <= 6"
        ({"field": "last_nps", "op": "is_null"}, ["b", "c"]),
        ({"field": "nps_category", "op": "not_in", "value": ["promoter"]}, ["a"]),
        ({"field": "channels", "op": "contains", "value": "store"}, ["a"]),
        ({"field": "days_since_last_purchase", "op": ">=", "value": 60}, ["a"]),
        ({"field": "days_since_last_purchase", "op": "<", "value": 6}, ["b"]),
        ({"field": "days_since_last_purchase", "op": "=", "value": 5}, ["b"]),
        ({"field": "last_purchase_at", "op": "within_last_days", "value": 30}, ["b"]),
        (
            {
                "field": "last_purchase_at",
                "op": "before",
                "value": (NOW - timedelta(days=30)).date().isoformat(),
            },
            ["a"],
        ),
        ({"field": "ladder_stage", "op": ">=", "value": "client"}, []),  # no stage computed yet
        ({"purchases": {"within_days": 90, "at_least": 1}}, ["a", "b"]),
        ({"purchases": {"within_days": 90, "at_least": 3}}, ["b"]),
        ({"purchases": {"within_days": 365, "at_least": 2, "at_most": 3}}, ["b"]),
        ({"purchases": {"within_days": 90, "at_most": 0}}, ["c"]),
        ({"spend": {"within_days": 90, "currency": "EUR", "at_least": 2000}}, ["a", "b"]),
        ({"spend": {"within_days": 90, "currency": "USD", "at_least": 1}}, ["b"]),
        (
            {
                "any": [
                    {"field": "purchase_count", "op": "=", "value": 0},
                    {
                        "all": [
                            {"field": "currency", "op": "=", "value": "EUR"},
                            {"field": "multichannel", "op": "=", "value": False},
                            {"field": "net_spend_minor", "op": "<", "value": 10000},
                        ]
                    },
                ]
            },
            ["b", "c"],
        ),
    ],
)
async def test_compiled_rules_select_the_right_customers(
    people: UnitOfWorkFactory, raw: dict[str, Any], expected: list[str]
) -> None:
    assert await matches(people, raw) == expected


async def test_a_window_compiles_to_one_uncorrelated_group_by() -> None:
    rule = rules.parse({"purchases": {"within_days": 90, "at_least": 3}})
    sql = str(
        compiler.matching(rule, now=NOW, dialect="sqlite").compile(compile_kwargs={"literal_binds": False})
    )
    assert "GROUP BY purchase_facts.customer_id \nHAVING count(*) >=" in sql
    assert sql.count("SELECT") == 2
    assert "customer_features.customer_id =" not in sql


# ---- membership --------------------------------------------------------------------------------------


async def outbox_types(factory: UnitOfWorkFactory) -> list[str]:
    async with factory() as uow:
        return list(
            await uow.session.scalars(select(MESSAGING.outbox.c.type).order_by(MESSAGING.outbox.c.id))
        )


async def test_backfill_update_and_events(people: UnitOfWorkFactory) -> None:
    created = await service.create(
        people(), SegmentIn(name="Big", rule={"field": "net_spend_minor", "op": ">=", "value": 10000})
    )
    assert (created.entered, created.exited) == (1, 0)
    sid = created.segment.id
    assert [m.customer_id for m in (await service.members(people(), sid, None, 10)).items] == ["a"]
    replaced = await service.replace(
        people(), sid, SegmentIn(name="Big", rule={"field": "net_spend_minor", "op": ">=", "value": 1000})
    )
    assert (replaced.entered, replaced.exited, replaced.segment.version) == (1, 0, 2)
    replaced = await service.replace(
        people(), sid, SegmentIn(name="Big", rule={"field": "net_spend_minor", "op": "<", "value": 10000})
    )
    assert (replaced.entered, replaced.exited) == (1, 1)
    assert await outbox_types(people) == [
        "crm.segmentation.segment_entered.v1",
        "crm.segmentation.segment_entered.v1",
        "crm.segmentation.segment_entered.v1",
        "crm.segmentation.segment_exited.v1",
    ]
    async with people() as uow:
        history = list(
            await uow.session.execute(
                select(SegmentHistory.customer_id, SegmentHistory.change).order_by(SegmentHistory.id)
            )
        )
    assert [tuple(h) for h in history] == [
        ("a", "entered"),
        ("b", "entered"),
        ("c", "entered"),
        ("a", "exited"),
    ]


async def test_preview_counts_without_saving(people: UnitOfWorkFactory) -> None:
    out = await service.preview(people(), PreviewIn(rule={"purchases": {"within_days": 365, "at_least": 1}}))
    assert (out.count, out.sample, out.time_relative) == (2, ["a", "b"], True)
    async with people() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Segment)) == 0


async def test_references_cycles_and_dependents(people: UnitOfWorkFactory) -> None:
    base = (
        await service.create(
            people(), SegmentIn(name="Buyers", rule={"field": "purchase_count", "op": ">", "value": 3})
        )
    ).segment
    top = (
        await service.create(
            people(),
            SegmentIn(
                name="Buyers on web",
                rule={
                    "all": [{"in_segment": base.id}, {"field": "channels", "op": "contains", "value": "web"}]
                },
            ),
        )
    ).segment
    assert [m.customer_id for m in (await service.members(people(), top.id, None, 10)).items] == ["a"]
    with pytest.raises(service.InvalidRule) as info:
        await service.replace(
            people(), base.id, SegmentIn(name="Buyers", rule={"any": [{"in_segment": top.id}]})
        )
    assert info.value.errors[0].field == "body.rule.any.0.in_segment"
    assert f"{base.id} → {top.id} → {base.id}" in info.value.errors[0].message
    # Widening the base re-evaluates the segment built on it.
    await service.replace(
        people(), base.id, SegmentIn(name="Buyers", rule={"field": "purchase_count", "op": ">", "value": 2})
    )
    assert [m.customer_id for m in (await service.members(people(), top.id, None, 10)).items] == ["a", "b"]
    with pytest.raises(Conflict):
        await service.remove(people(), base.id)
    await service.remove(people(), top.id)
    await service.remove(people(), base.id)
    assert (await service.customer_segments(people(), "a")).items == []


async def test_realtime_reevaluation_follows_the_features(people: UnitOfWorkFactory) -> None:
    seg = (
        await service.create(
            people(),
            SegmentIn(name="Spenders", rule={"field": "net_spend_minor", "op": ">=", "value": 10000}),
        )
    ).segment
    async with people() as uow:
        await uow.session.execute(
            update(CustomerFeatures)
            .where(CustomerFeatures.customer_id.in_(["a", "b"]))
            .values(net_spend_minor=CustomerFeatures.net_spend_minor + 8000)
        )
        changes = await service.reevaluate(uow.session, uow, ["b", "unknown"])
        await uow.commit()
    assert [(c.segment_id, c.customer_id, c.change) for c in changes] == [(seg.id, "b", "entered")]
    async with people() as uow:
        await uow.session.execute(
            update(CustomerFeatures).where(CustomerFeatures.customer_id == "a").values(erased=True)
        )
        changes = await service.reevaluate(uow.session, uow, ["a", "b"])
        await uow.commit()
    assert [(c.customer_id, c.change) for c in changes] == [("a", "exited")]
    assert [s.name for s in (await service.customer_segments(people(), "b")).items] == ["Spenders"]


async def test_static_lists(people: UnitOfWorkFactory) -> None:
    seg = (await service.create(people(), SegmentIn(name="Fair visitors", kind="static"))).segment
    with pytest.raises(service.InvalidRule) as info:
        await service.upload(people(), seg.id, MembersUpload(customer_ids=["a", "zzz", "d"]))
    assert [e.field for e in info.value.errors] == ["body.customer_ids.1", "body.customer_ids.2"]
    assert (await service.upload(people(), seg.id, MembersUpload(customer_ids=["a", "b", "a"]))).entered == 2
    result = await service.upload(people(), seg.id, MembersUpload(customer_ids=["c", "b"], replace=True))
    assert (result.entered, result.exited) == (1, 1)
    with pytest.raises(InvalidInput):
        await service.create(
            people(),
            SegmentIn(name="x", kind="static", rule={"field": "purchase_count", "op": ">", "value": 0}),
        )
    with pytest.raises(Conflict):
        await service.create(people(), SegmentIn(name="Fair visitors", kind="static"))


async def test_scheduled_pass_reruns_time_relative_rules(people: UnitOfWorkFactory) -> None:
    seg = (
        await service.create(
            people(), SegmentIn(name="Recent", rule={"purchases": {"within_days": 6, "at_least": 1}})
        )
    ).segment
    assert seg.time_relative
    async with people() as uow:  # the purchase ages out of the window
        await uow.session.execute(
            update(PurchaseFact)
            .where(PurchaseFact.customer_id == "b")
            .values(occurred_at=NOW - timedelta(days=30))
        )
        await uow.commit()
    assert await service.reevaluate_time_relative(people) == 1
    assert (await service.members(people(), seg.id, None, 10)).items == []
