"""Insight use cases: clustering runs, playbooks (define, evaluate, learn).

Customers are read in keyset-paginated chunks (`CHUNK` rows ordered by id), never all at once: a run
makes two passes, the first drawing a seeded reservoir sample to fit on, the second assigning every
customer and writing the assignments chunk by chunk; learning draws its training sample the same way.
CPU-heavy fitting runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Table, and_, delete, exists, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.segmentation.insights import clusters, playbooks
from services.segmentation.insights.models import ClusterAssignment, ClusterRun, Playbook
from services.segmentation.insights.schemas import (
    ClusterFeatureOut,
    ClusterProfile,
    ClusterRunIn,
    ClusterRunOut,
    CustomerClusterOut,
    KScore,
    LeafAction,
    LearnOut,
    NextBestActionOut,
    PathStep,
    PlaybookIn,
    PlaybookLearnIn,
    PlaybookOut,
)
from services.segmentation.models import CustomerFeatures
from services.segmentation.segments import rules
from services.segmentation.segments.compile import Compiler
from services.segmentation.segments.models import Segment, SegmentMember
from services.segmentation.segments.service import InvalidRule
from services.segmentation.value.models import CustomerValue
from shared.db import insert_rows
from shared.errors import Conflict, InvalidInput, NotFound
from shared.logging import get_logger
from shared.uow import UnitOfWork

log = get_logger(__name__)

F: Table = CustomerFeatures.__table__  # type: ignore[assignment]
CV: Table = CustomerValue.__table__  # type: ignore[assignment]
MEMBERS: Table = SegmentMember.__table__  # type: ignore[assignment]
ASSIGNMENTS: Table = ClusterAssignment.__table__  # type: ignore[assignment]
CHUNK = 5_000
DEFAULT_K_RANGE = (2, 8)
MAX_K_SPAN = 10


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


async def _stream(
    session: AsyncSession,
    columns: Sequence[ColumnElement[Any]],
    where: Sequence[ColumnElement[bool]],
    *,
    join_value: bool = False,
) -> AsyncIterator[Sequence[Any]]:
    """Rows of `columns` (the first being the customer id) in chunks, by ascending customer id."""
    after: str | None = None
    source = F.outerjoin(CV, CV.c.customer_id == F.c.customer_id) if join_value else F
    while True:
        query = select(*columns).select_from(source).where(*where)
        if after is not None:
            query = query.where(F.c.customer_id > after)
        rows = (await session.execute(query.order_by(F.c.customer_id).limit(CHUNK))).all()
        if not rows:
            return
        yield rows
        after = rows[-1][0]


# ---- clusters -------------------------------------------------------------------------------------

CLUSTER_COLUMNS: list[ColumnElement[Any]] = [
    F.c.customer_id,
    F.c.last_purchase_at,
    F.c.registered_at,
    F.c.first_purchase_at,
    F.c.purchase_count,
    F.c.refund_count,
    F.c.net_spend_minor,
    F.c.average_order_minor,
    F.c.channel_count,
    F.c.complaint_count,
    F.c.contact_count,
    F.c.last_csat,
    F.c.last_nps,
    F.c.mean_interpurchase_days,
    CV.c.clv_predicted_minor,
    CV.c.risk_score,
]


def cluster_features() -> list[ClusterFeatureOut]:
    return [
        ClusterFeatureOut(
            name=f.name, title=f.title, unit=f.unit, description=f.description, log1p=f.log, default=f.default
        )
        for f in clusters.FEATURES.values()
    ]


def _check_features(names: Sequence[str] | None) -> list[str] | None:
    if names is None:
        return None
    errors: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name not in clusters.FEATURES:
            errors.append(
                (
                    f"body.features.{i}",
                    f"unknown feature {name!r}{rules._suggest(name, list(clusters.FEATURES))}; "
                    f"one of {', '.join(clusters.FEATURES)}",
                )
            )
        elif name in seen:
            errors.append((f"body.features.{i}", f"{name!r} is listed twice"))
        seen.add(name)
    if errors:
        raise InvalidRule(errors)
    return list(names)


def _check_k(body: ClusterRunIn) -> tuple[str, list[int]]:
    """The field to blame for too few customers, and the candidate ks."""
    if body.k is not None and body.k_range is not None:
        raise InvalidInput("body.k_range", "give k or k_range, not both")
    if body.k is not None:
        return "body.k", [body.k]
    if body.k_range is None:
        low, high = DEFAULT_K_RANGE
        return "body.k_range", list(range(low, high + 1))
    low, high = body.k_range
    if low < 2:
        raise InvalidInput("body.k_range.0", f"k starts at 2, got {low}")
    if high < low:
        raise InvalidInput("body.k_range.1", f"below the low end ({low})")
    if high - low > MAX_K_SPAN:
        raise InvalidInput("body.k_range", f"at most {MAX_K_SPAN + 1} values of k, got {high - low + 1}")
    if high > 30:
        raise InvalidInput("body.k_range.1", f"at most 30 clusters, got {high}")
    return "body.k_range", list(range(low, high + 1))


async def _main_currency(session: AsyncSession) -> str | None:
    row = (
        await session.execute(
            select(F.c.currency, func.count().label("n"))
            .where(F.c.erased == false(), F.c.purchase_count > 0, F.c.currency.is_not(None))
            .group_by(F.c.currency)
            .order_by(func.count().desc(), F.c.currency)
            .limit(1)
        )
    ).first()
    return None if row is None else str(row[0])


def _population(currency: str | None, prospects: bool) -> list[ColumnElement[bool]]:
    buyers = and_(F.c.purchase_count > 0, F.c.currency == currency) if currency else false()
    chosen = or_(buyers, F.c.purchase_count == 0) if prospects else buyers
    return [F.c.erased == false(), chosen]


def _run_out(run: ClusterRun) -> ClusterRunOut:
    return ClusterRunOut(
        id=run.id,
        created_at=run.created_at,
        k=run.k,
        features=list(run.features),
        currency=run.currency,
        population=run.population,
        sample_size=run.sample_size,
        random_state=run.random_state,
        silhouette=run.silhouette,
        k_scores=[KScore(**s) for s in run.k_scores],
        sizes=list(run.sizes),
        clusters=[ClusterProfile(**p) for p in run.profiles],
        params=dict(run.params),
    )


async def run_clusters(uow: UnitOfWork, body: ClusterRunIn, *, now: datetime | None = None) -> ClusterRunOut:
    """Fit k-means on a seeded sample, assign everyone in chunks, store the run and its profiles."""
    features = _check_features(body.features)
    blame, ks = _check_k(body)
    now = now or datetime.now(UTC)
    async with uow:
        session = uow.session
        currency = body.currency or await _main_currency(session)
        where = _population(currency, body.include_prospects)
        reservoir = clusters.Reservoir(body.sample_cap, body.random_state)
        with_csat = 0
        async for rows in _stream(session, CLUSTER_COLUMNS, where, join_value=True):
            for row in rows:
                reservoir.offer(row._mapping)
                with_csat += row._mapping["last_csat"] is not None
        population = reservoir.seen
        whom = f"customers whose main currency is {currency}" if currency else "customers"
        if population == 0:
            raise InvalidInput(blame, f"no {whom} to cluster")
        needed = min(ks) * clusters.MIN_PER_CLUSTER
        if population < needed:
            raise InvalidInput(
                blame,
                f"too few customers for k={min(ks)}: {population} {whom}, and {min(ks)} clusters need at "
                f"least {needed} ({clusters.MIN_PER_CLUSTER} per cluster)",
            )
        if features is None:
            features = list(clusters.DEFAULT_FEATURES)
            features += [f for f in clusters.AUTO_FEATURES if with_csat * 2 >= population]
        sample_raw = clusters.vectorise(reservoir.items, features, now)
        try:
            fit = await asyncio.to_thread(clusters.fit, sample_raw, features, ks, body.random_state)
        except clusters.TooFewCustomers as exc:
            raise InvalidInput(
                blame,
                f"too few distinct customers for k={min(ks)}: {exc}; lower k or add features",
            ) from exc
        excluded = 0
        if currency is not None:
            excluded = int(
                await session.scalar(
                    select(func.count()).where(
                        F.c.erased == false(), F.c.purchase_count > 0, F.c.currency != currency
                    )
                )
                or 0
            )
        run = ClusterRun(
            id=str(uuid.uuid4()),
            created_at=now,
            k=fit.k,
            features=features,
            currency=currency,
            population=0,
            sample_size=len(reservoir.items),
            random_state=body.random_state,
            silhouette=fit.silhouette,
            k_scores=fit.scores,
            sizes=[],
            profiles=[],
            model=fit.model.to_json(),
            params={
                "k": body.k,
                "k_range": [ks[0], ks[-1]] if body.k is None else None,
                "include_prospects": body.include_prospects,
                "sample_cap": body.sample_cap,
                "excluded_other_currencies": excluded,
            },
        )
        session.add(run)
        await session.flush()
        totals = clusters.Totals(fit.k, len(features))
        async for rows in _stream(session, CLUSTER_COLUMNS, where, join_value=True):
            mappings = [row._mapping for row in rows]
            raw = clusters.vectorise(mappings, features, now)
            labels, distances = fit.model.assign(raw)
            totals.add(raw, labels)
            await insert_rows(
                session,
                ASSIGNMENTS,
                [
                    {
                        "run_id": run.id,
                        "customer_id": m["customer_id"],
                        "cluster": int(c),
                        "distance": round(float(d), 6),
                    }
                    for m, c, d in zip(mappings, labels, distances, strict=True)
                ],
            )
        sample_labels, _ = fit.model.assign(sample_raw)
        run.population = int(totals.count.sum())
        run.sizes = [int(n) for n in totals.count]
        run.profiles = clusters.profiles(fit, totals, sample_raw, sample_labels, currency)
        await uow.commit()
        log.info("cluster_run", run_id=run.id, k=run.k, population=run.population, silhouette=run.silhouette)
        return _run_out(run)


async def latest_run(uow: UnitOfWork) -> ClusterRunOut:
    async with uow:
        run = await _latest(uow.session)
        if run is None:
            raise NotFound("no clustering run yet: start one with POST /clusters/runs")
        return _run_out(run)


async def _latest(session: AsyncSession) -> ClusterRun | None:
    return (
        await session.scalars(
            select(ClusterRun).order_by(ClusterRun.created_at.desc(), ClusterRun.id).limit(1)
        )
    ).first()


async def read_run(uow: UnitOfWork, run_id: str) -> ClusterRunOut:
    async with uow:
        run = await uow.session.get(ClusterRun, run_id)
        if run is None:
            raise NotFound(f"no clustering run {run_id}", run_id=run_id)
        return _run_out(run)


async def customer_cluster(uow: UnitOfWork, customer_id: str, run_id: str | None) -> CustomerClusterOut:
    async with uow:
        session = uow.session
        run = await (session.get(ClusterRun, run_id) if run_id is not None else _latest(session))
        if run is None:
            raise NotFound(
                f"no clustering run {run_id}" if run_id else "no clustering run yet", run_id=run_id
            )
        assignment = await session.get(ClusterAssignment, (run.id, customer_id))
        if assignment is None:
            raise NotFound(
                f"customer {customer_id} was not clustered in run {run.id} (unknown, erased, another "
                "currency, or arrived after the run)",
                customer_id=customer_id,
                run_id=run.id,
            )
        profile = run.profiles[assignment.cluster]
        return CustomerClusterOut(
            customer_id=customer_id,
            run_id=run.id,
            run_created_at=run.created_at,
            cluster=assignment.cluster,
            label=profile["label"],
            description=profile["description"],
            distance=assignment.distance,
        )


# ---- playbooks: definitions -----------------------------------------------------------------------


def _actions(tree: Any) -> list[str]:
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("action"), str):
                found.add(node["action"])
            for key in ("then", "else"):
                visit(node.get(key))

    visit(tree)
    return sorted(found)


def _out(playbook: Playbook) -> PlaybookOut:
    return PlaybookOut(
        id=playbook.id,
        name=playbook.name,
        description=playbook.description,
        tree=playbook.tree,
        version=playbook.version,
        source=playbook.source,
        training=playbook.training,
        actions=_actions(playbook.tree),
        created_at=playbook.created_at,
        updated_at=playbook.updated_at,
    )


async def _segment_ids(session: AsyncSession) -> set[str]:
    return set(await session.scalars(select(Segment.id)))


def _check_tree(raw: Any, path: str, segment_ids: set[str]) -> playbooks.Node:
    try:
        return playbooks.parse(raw, path, segment_exists=segment_ids.__contains__)
    except playbooks.TreeErrors as exc:
        raise InvalidRule(exc.errors) from exc


async def _name_taken(session: AsyncSession, name: str, other_than: str | None) -> None:
    query = select(Playbook.id).where(Playbook.name == name)
    if other_than is not None:
        query = query.where(Playbook.id != other_than)
    if await session.scalar(query) is not None:
        raise Conflict(f"a playbook named {name!r} exists already", field="body.name")


async def _save(session: AsyncSession, playbook: Playbook) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a playbook named {playbook.name!r} exists already", field="body.name") from exc


async def create_playbook(uow: UnitOfWork, body: PlaybookIn) -> PlaybookOut:
    async with uow:
        session = uow.session
        _check_tree(body.tree, "body.tree", await _segment_ids(session))
        await _name_taken(session, body.name, None)
        now = datetime.now(UTC)
        playbook = Playbook(
            id=str(uuid.uuid4()),
            name=body.name,
            description=body.description,
            tree=body.tree,
            version=1,
            source="staff",
            training=None,
            created_at=now,
            updated_at=now,
        )
        session.add(playbook)
        await _save(session, playbook)
        await uow.commit()
        return _out(playbook)


async def _get(session: AsyncSession, playbook_id: str, *, lock: bool = False) -> Playbook:
    playbook = await session.get(Playbook, playbook_id, with_for_update=lock)
    if playbook is None:
        raise NotFound(f"no playbook {playbook_id}", playbook_id=playbook_id)
    return playbook


async def replace_playbook(uow: UnitOfWork, playbook_id: str, body: PlaybookIn) -> PlaybookOut:
    async with uow:
        session = uow.session
        playbook = await _get(session, playbook_id, lock=True)
        _check_tree(body.tree, "body.tree", await _segment_ids(session))
        await _name_taken(session, body.name, playbook_id)
        playbook.name = body.name
        playbook.description = body.description
        playbook.tree = body.tree
        playbook.source = "staff"  # edited by staff; `training` stays as the record of its origin
        playbook.version += 1
        playbook.updated_at = datetime.now(UTC)
        await _save(session, playbook)
        await uow.commit()
        return _out(playbook)


async def read_playbook(uow: UnitOfWork, playbook_id: str) -> PlaybookOut:
    async with uow:
        return _out(await _get(uow.session, playbook_id))


async def list_playbooks(uow: UnitOfWork) -> list[PlaybookOut]:
    async with uow:
        found = await uow.session.scalars(select(Playbook).order_by(Playbook.created_at, Playbook.id))
        return [_out(p) for p in found]


async def delete_playbook(uow: UnitOfWork, playbook_id: str) -> None:
    async with uow:
        await _get(uow.session, playbook_id, lock=True)
        await uow.session.execute(delete(Playbook).where(Playbook.id == playbook_id))
        await uow.commit()


# ---- playbooks: evaluation ------------------------------------------------------------------------


def _observed(spec: rules.FieldSpec, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if spec.days_since:
        days = clusters.whole_days(value, now)
        return None if days is None else int(days)
    if spec.type is rules.FieldType.BOOLEAN:
        return bool(value)
    return value


async def next_best_action(
    uow: UnitOfWork, customer_id: str, playbook_id: str, *, now: datetime | None = None
) -> NextBestActionOut:
    """Evaluate every decision of the playbook for one customer in one SELECT, then walk the tree."""
    now = now or datetime.now(UTC)
    async with uow:
        session = uow.session
        playbook = await _get(session, playbook_id)
        root = playbooks.parse(playbook.tree)  # checked when saved; a deleted segment is just false
        erased = await session.scalar(select(F.c.erased).where(F.c.customer_id == customer_id))
        if erased is None or erased:
            raise NotFound(f"no features for customer {customer_id}", customer_id=customer_id)
        compiler = Compiler(now=now, dialect=_dialect(session), restrict=[customer_id])
        decisions = list(playbooks.branches(root))
        specs: dict[str, rules.FieldSpec] = {}
        for branch in decisions:
            for spec in playbooks.compared_fields(branch.condition):
                specs.setdefault(spec.name, spec)
        columns = [compiler.compile(b.condition).label(f"d{i}") for i, b in enumerate(decisions)]
        columns += [compiler.column(spec).label(f"f{i}") for i, spec in enumerate(specs.values())]
        results: dict[str, bool] = {}
        values: dict[str, Any] = {}
        if columns:
            row = (await session.execute(select(*columns).where(F.c.customer_id == customer_id))).one()
            results = {b.node: bool(row[i]) for i, b in enumerate(decisions)}
            values = {
                name: _observed(spec, row[len(decisions) + i], now)
                for i, (name, spec) in enumerate(specs.items())
            }
        leaf, steps = playbooks.decide(root, results)
        return NextBestActionOut(
            customer_id=customer_id,
            playbook_id=playbook.id,
            playbook_version=playbook.version,
            action=leaf.action,
            params=leaf.params,
            leaf=leaf.node,
            leaf_label=leaf.label,
            path=[
                PathStep(
                    node=step.branch.node,
                    label=step.branch.label,
                    condition=step.branch.raw,
                    observed={
                        s.name: values.get(s.name) for s in playbooks.compared_fields(step.branch.condition)
                    },
                    result=step.result,
                )
                for step in steps
            ],
            evaluated_at=now,
        )


# ---- playbooks: learning --------------------------------------------------------------------------

LEARNABLE_TYPES = (rules.FieldType.INTEGER, rules.FieldType.NUMBER, rules.FieldType.BOOLEAN)
LEARNABLE = tuple(spec for spec in rules.FIELDS.values() if spec.type in LEARNABLE_TYPES)
TARGET_WORDS = {"churned": "churned", "high_risk": "high risk", "valuable": "valuable", "segment": "members"}


def _learn_features(names: Sequence[str] | None) -> list[rules.FieldSpec]:
    if names is None:
        return list(LEARNABLE)
    errors: list[tuple[str, str]] = []
    specs: list[rules.FieldSpec] = []
    learnable = [s.name for s in LEARNABLE]
    for i, name in enumerate(names):
        spec = rules.FIELDS.get(name)
        if spec is None:
            errors.append((f"body.features.{i}", f"unknown field {name!r}{rules._suggest(name, learnable)}"))
        elif spec.type not in LEARNABLE_TYPES:
            hint = f"; use days_since_{name.removesuffix('_at')}" if spec.type is rules.FieldType.DATE else ""
            errors.append(
                (f"body.features.{i}", f"{name} is {spec.type}: a tree tests numbers and booleans{hint}")
            )
        elif spec in specs:
            errors.append((f"body.features.{i}", f"{name!r} is listed twice"))
        else:
            specs.append(spec)
    if errors:
        raise InvalidRule(errors)
    return specs


def _leaf_action(raw: str | LeafAction, path: str) -> playbooks.ActionSpec:
    action, params = (raw, {}) if isinstance(raw, str) else (raw.action, raw.params)
    if not playbooks.ACTION.match(action):
        where = path if isinstance(raw, str) else f"{path}.action"
        raise InvalidInput(
            where,
            f"expected an action name (lower case, digits and _, starting with a letter), got {action!r}",
        )
    return playbooks.ActionSpec(action, dict(params))


def _target_column(body: PlaybookLearnIn) -> ColumnElement[Any]:
    if body.target == "segment":
        return exists().where(
            MEMBERS.c.segment_id == body.segment_id, MEMBERS.c.customer_id == F.c.customer_id
        )
    column = {"churned": CV.c.lapsed, "high_risk": CV.c.risk_level, "valuable": CV.c.value_tier}[body.target]
    return select(column).where(CV.c.customer_id == F.c.customer_id).scalar_subquery()


def _is_positive(target: str, value: Any) -> bool:
    if target == "high_risk":
        return bool(value == "high")
    if target == "valuable":
        return bool(value in ("top", "high"))
    return bool(value)


def _fit_tree(
    x: np.ndarray[Any, np.dtype[np.float64]], y: np.ndarray[Any, np.dtype[np.bool_]], body: PlaybookLearnIn
) -> Any:
    from sklearn.tree import DecisionTreeClassifier

    estimator = DecisionTreeClassifier(
        max_depth=body.max_depth,
        min_samples_leaf=body.min_samples_leaf,
        class_weight="balanced" if body.balanced else None,
        random_state=body.random_state,
    )
    return estimator.fit(playbooks.impute_for_tree(x), y)


async def learn_playbook(uow: UnitOfWork, body: PlaybookLearnIn, *, now: datetime | None = None) -> LearnOut:
    """Fit a small decision tree predicting the target and save it as an editable playbook."""
    specs = _learn_features(body.features)
    actions = {
        True: _leaf_action(body.actions.true, "body.actions.true"),
        False: _leaf_action(body.actions.false, "body.actions.false"),
    }
    now = now or datetime.now(UTC)
    async with uow:
        session = uow.session
        segment_ids = await _segment_ids(session)
        if body.target == "segment":
            if body.segment_id is None:
                raise InvalidInput("body.segment_id", "required with target: segment")
            if body.segment_id not in segment_ids:
                raise InvalidInput("body.segment_id", f"no segment {body.segment_id!r}")
        elif body.segment_id is not None:
            raise InvalidInput("body.segment_id", "only with target: segment")
        compiler = Compiler(now=now, dialect=_dialect(session))
        where: list[ColumnElement[bool]] = [F.c.erased == false()]
        if body.population is not None:
            try:
                rule = rules.parse(
                    body.population, "body.population", segment_exists=segment_ids.__contains__
                )
            except rules.RuleErrors as exc:
                raise InvalidRule(exc.errors) from exc
            where.append(compiler.compile(rule))
        columns = [F.c.customer_id, *(compiler.column(s) for s in specs), _target_column(body)]
        reservoir = clusters.Reservoir(body.sample_cap, body.random_state)
        async for rows in _stream(session, columns, where):
            for row in rows:
                values = [_observed(spec, row[j + 1], now) for j, spec in enumerate(specs)]
                vector = [np.nan if v is None else float(v) for v in values]
                reservoir.offer((vector, _is_positive(body.target, row[-1])))
        n = len(reservoir.items)
        if n < max(2, 2 * body.min_samples_leaf):
            raise InvalidInput(
                "body.population",
                f"too few customers to learn from: {n}, at least {max(2, 2 * body.min_samples_leaf)} "
                f"for min_samples_leaf={body.min_samples_leaf}",
            )
        x = np.asarray([v for v, _ in reservoir.items], dtype=np.float64)
        y = np.asarray([t for _, t in reservoir.items], dtype=bool)
        positives = int(y.sum())
        word = TARGET_WORDS[body.target]
        if positives in (0, n):
            state = "all" if positives else "none"
            raise InvalidInput(
                "body.target", f"{state} of the {n} training customers are {word}: nothing to learn"
            )
        estimator = await asyncio.to_thread(_fit_tree, x, y, body)
        tree = playbooks.learned_tree(estimator, x, y, specs, actions, word)
        _check_tree(tree, "tree", segment_ids)  # the learned tree is a valid playbook by construction
        importances = {
            spec.name: round(float(v), 4)
            for spec, v in sorted(
                zip(specs, estimator.feature_importances_, strict=True), key=lambda item: -float(item[1])
            )
            if v > 0
        }
        training: dict[str, Any] = {
            "target": body.target,
            "segment_id": body.segment_id,
            "population_rule": body.population,
            "features": [s.name for s in specs],
            "population": reservoir.seen,
            "samples": n,
            "positives": positives,
            "positive_share": round(positives / n, 4),
            "accuracy": round(float(estimator.score(playbooks.impute_for_tree(x), y)), 4),
            "depth": int(estimator.get_depth()),
            "leaves": int(estimator.get_n_leaves()),
            "importances": importances,
            "max_depth": body.max_depth,
            "min_samples_leaf": body.min_samples_leaf,
            "balanced": body.balanced,
            "random_state": body.random_state,
            "learned_at": now.isoformat(),
        }
        saved: PlaybookOut | None = None
        if body.save:
            await _name_taken(session, body.name, None)
            playbook = Playbook(
                id=str(uuid.uuid4()),
                name=body.name,
                description=body.description,
                tree=tree,
                version=1,
                source="learned",
                training=training,
                created_at=now,
                updated_at=now,
            )
            session.add(playbook)
            await _save(session, playbook)
            await uow.commit()
            saved = _out(playbook)
        return LearnOut(playbook=saved, tree=tree, training=training)
