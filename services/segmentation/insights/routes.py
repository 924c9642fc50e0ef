"""HTTP routes of the insights: micro-segments (`clusters`) and next-best-action playbooks
(`playbooks`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status

from services.segmentation.insights import service
from services.segmentation.insights.schemas import (
    EXAMPLE_LEARN,
    EXAMPLE_PLAYBOOKS,
    EXAMPLE_RUNS,
    ClusterFeatureList,
    ClusterRunIn,
    ClusterRunOut,
    CustomerClusterOut,
    LearnOut,
    NextBestActionOut,
    PlaybookIn,
    PlaybookLearnIn,
    PlaybookList,
    PlaybookOut,
)
from shared.errors import PROBLEM_RESPONSES, Problem
from shared.runtime import UowDep

clusters_router = APIRouter(tags=["clusters"])
playbooks_router = APIRouter(tags=["playbooks"])

NO_RUN: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such clustering run"}}
NO_PLAYBOOK: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such playbook"}}
NAME_TAKEN: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "Name already used"}}
TREE = (
    'A tree is made of decisions `{"condition": rule, "then": node, "else": node, "label": "…"}` and '
    'actions `{"action": "win_back_offer", "params": {…}, "label": "…"}`. A condition is a rule of the '
    "segment rule language (fields of `GET /segments/catalogue`, `all`/`any`/`not`, time windows, "
    "`in_segment`); a comparison on a missing value is false. An invalid tree is a 422 whose `errors` "
    "name every faulty path, e.g. `body.tree.then.else.condition.field` (unknown field, with close "
    "matches), `body.tree.else.action` (not an action name) or `body.tree.then.else` (missing branch)."
)

RunBody = Annotated[ClusterRunIn, Body(openapi_examples=EXAMPLE_RUNS)]  # type: ignore[arg-type]
PlaybookBody = Annotated[PlaybookIn, Body(openapi_examples=EXAMPLE_PLAYBOOKS)]  # type: ignore[arg-type]
LearnBody = Annotated[PlaybookLearnIn, Body(openapi_examples=EXAMPLE_LEARN)]  # type: ignore[arg-type]


# ---- clusters -------------------------------------------------------------------------------------


@clusters_router.get(
    "/clusters/features",
    response_model=ClusterFeatureList,
    summary="Features clustering can use",
    description="Name, unit, whether money/counts are compressed with log1p, and the default set.",
)
async def list_cluster_features() -> ClusterFeatureList:
    return ClusterFeatureList(items=service.cluster_features())


@clusters_router.post(
    "/clusters/runs",
    status_code=status.HTTP_201_CREATED,
    response_model=ClusterRunOut,
    summary="Find micro-segments: run k-means clustering",
    description=(
        "Clusters the customers of one main currency (default: the most common) on value and behaviour "
        "features: log1p for money and counts, standardised, k-means with a fixed `random_state` (same "
        "seed and data, same assignments). With `k_range` (default 2–8) every k is fitted and the best "
        "silhouette score wins. The model is fitted on a seeded sample of at most `sample_cap` customers, "
        "then every customer is assigned in chunks, so memory stays bounded. Stores the run and each "
        "customer's cluster, and answers readable profiles: size, share, mean and median of each feature "
        "against the population, the centre's z-scores, a label (`High spend, frequent, recent — 4% of "
        "customers`) and a description. A 422 names the field at fault: `body.features.N` (unknown), "
        "`body.k` / `body.k_range` (too few customers for k: at least 3 per cluster)."
    ),
    responses={**PROBLEM_RESPONSES},
)
async def start_run(body: RunBody, uow: UowDep, response: Response) -> ClusterRunOut:
    run = await service.run_clusters(uow, body)
    response.headers["Location"] = f"/clusters/runs/{run.id}"
    return run


@clusters_router.get(
    "/clusters/runs/latest",
    response_model=ClusterRunOut,
    summary="The latest clustering run",
    description="The most recent run with its cluster profiles; a 404 before the first run.",
    responses={404: {"model": Problem, "description": "No run yet"}},
)
async def read_latest_run(uow: UowDep) -> ClusterRunOut:
    return await service.latest_run(uow)


@clusters_router.get(
    "/clusters/runs/{run_id}",
    response_model=ClusterRunOut,
    summary="A clustering run",
    description="Its options, the silhouette score of every k tried, cluster sizes and profiles.",
    responses=NO_RUN,
)
async def read_run(run_id: str, uow: UowDep) -> ClusterRunOut:
    return await service.read_run(uow, run_id)


@clusters_router.get(
    "/customers/{customer_id}/cluster",
    response_model=CustomerClusterOut,
    summary="A customer's micro-segment",
    description=(
        "The cluster the customer was assigned to in the latest run (or in `run`), with its label, "
        "description and the customer's distance to the centre. A 404 when there is no run, or the "
        "customer was not part of it (unknown, erased, another currency, or newer than the run)."
    ),
    responses={404: {"model": Problem, "description": "No run, or the customer is not in it"}},
)
async def read_customer_cluster(
    customer_id: str,
    uow: UowDep,
    run: Annotated[str | None, Query(description="A run id; default: the latest run")] = None,
) -> CustomerClusterOut:
    return await service.customer_cluster(uow, customer_id, run)


# ---- playbooks ------------------------------------------------------------------------------------


@playbooks_router.post(
    "/playbooks",
    status_code=status.HTTP_201_CREATED,
    response_model=PlaybookOut,
    summary="Create a next-best-action playbook",
    description="Saves a decision tree written by staff (version 1). " + TREE,
    responses={**PROBLEM_RESPONSES, **NAME_TAKEN},
)
async def create_playbook(body: PlaybookBody, uow: UowDep, response: Response) -> PlaybookOut:
    playbook = await service.create_playbook(uow, body)
    response.headers["Location"] = f"/playbooks/{playbook.id}"
    return playbook


@playbooks_router.post(
    "/playbooks/learn",
    status_code=status.HTTP_201_CREATED,
    response_model=LearnOut,
    summary="Learn a playbook from data (decision tree)",
    description=(
        "Fits a small scikit-learn decision tree (`max_depth` 1–6) predicting `target` — `churned` "
        "(lapsed now), `high_risk`, `valuable` (tier top or high) or membership of `segment_id` — from "
        "numeric and boolean catalogue fields, on a seeded sample of at most `sample_cap` customers "
        "(optionally restricted by a `population` rule). The tree becomes an ordinary playbook: "
        "thresholds in original units (integers stay integers; a missing value takes the `else` side, as "
        "in rules), leaves get the actions of `actions.true` / `actions.false`, and sibling leaves with "
        "the same action are merged. `training` reports samples, positives, accuracy and feature "
        "importances. With `save: false` nothing is stored. A 422 names the field: `body.features.N`, "
        "`body.segment_id`, `body.population.…`, `body.actions.true`, or `body.target` when the training "
        "customers are all (or none) of the target."
    ),
    responses={**PROBLEM_RESPONSES, **NAME_TAKEN},
)
async def learn_playbook(body: LearnBody, uow: UowDep) -> LearnOut:
    return await service.learn_playbook(uow, body)


@playbooks_router.get(
    "/playbooks", response_model=PlaybookList, summary="List playbooks", description="Oldest first."
)
async def list_playbooks(uow: UowDep) -> PlaybookList:
    return PlaybookList(items=await service.list_playbooks(uow))


@playbooks_router.get(
    "/playbooks/{playbook_id}",
    response_model=PlaybookOut,
    summary="Read a playbook",
    description="The tree, its version, whether it was written or learned, and every action it can choose.",
    responses=NO_PLAYBOOK,
)
async def read_playbook(playbook_id: str, uow: UowDep) -> PlaybookOut:
    return await service.read_playbook(uow, playbook_id)


@playbooks_router.put(
    "/playbooks/{playbook_id}",
    response_model=PlaybookOut,
    summary="Replace a playbook",
    description="Replaces name, description and tree, and bumps `version`; an edited learned playbook "
    "becomes `staff` (its `training` stays as the record of its origin). " + TREE,
    responses={**PROBLEM_RESPONSES, **NO_PLAYBOOK, **NAME_TAKEN},
)
async def replace_playbook(playbook_id: str, body: PlaybookBody, uow: UowDep) -> PlaybookOut:
    return await service.replace_playbook(uow, playbook_id, body)


@playbooks_router.delete(
    "/playbooks/{playbook_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a playbook",
    responses=NO_PLAYBOOK,
)
async def delete_playbook(playbook_id: str, uow: UowDep) -> Response:
    await service.delete_playbook(uow, playbook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@playbooks_router.get(
    "/customers/{customer_id}/next-best-action",
    response_model=NextBestActionOut,
    summary="The next best action for a customer, with the path that chose it",
    description=(
        "Evaluates the playbook's decisions on the customer's current features (one query, same meaning "
        "as segment rules) and walks the tree from the root: the chosen action and its params, and every "
        "decision taken in order — the node, its condition, the values observed (whole days for "
        "`days_since_*`; null when missing) and the result (`true`: the `then` branch). A 404 for an "
        "unknown playbook or a customer without features (unknown or erased)."
    ),
    responses={404: {"model": Problem, "description": "No such playbook or customer"}},
)
async def next_best_action(
    customer_id: str,
    uow: UowDep,
    playbook: Annotated[
        str, Query(description="The playbook id", examples=["3d8f0a4e-2b7c-4e55-9f1a-0c6b2d7e8a91"])
    ],
) -> NextBestActionOut:
    return await service.next_best_action(uow, customer_id, playbook)
