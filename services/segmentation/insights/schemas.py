"""HTTP schemas of the insights (clusters and playbooks), with the examples the OpenAPI document shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# ---- clusters -------------------------------------------------------------------------------------


class ClusterRunIn(BaseModel):
    """How to cluster. Give `k`, or `k_range` to let the silhouette score choose (default 2–8)."""

    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(default=None, ge=2, le=30, description="Exactly this many clusters", examples=[5])
    k_range: list[int] | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="[low, high], inclusive, at most 11 values: every k is fitted and the best silhouette "
        "score wins (ties: the smaller k)",
        examples=[[3, 8]],
    )
    features: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Feature names (see `GET /clusters/features`); default: recency, frequency, monetary, "
        "average order, tenure, channels, complaints, and satisfaction when half the customers have it",
        examples=[["recency_days", "frequency", "monetary_minor", "average_order_minor"]],
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="Cluster the customers whose main currency is this one (money never mixes "
        "currencies); default: the most common main currency",
        examples=["EUR"],
    )
    include_prospects: bool = Field(
        default=False, description="Also cluster customers without a purchase (their recency is imputed)"
    )
    sample_cap: int = Field(
        default=50_000,
        ge=10,
        le=500_000,
        description="The model is fitted on a seeded sample of at most this many customers; everyone is "
        "then assigned in chunks, so memory stays bounded whatever the population",
    )
    random_state: int = Field(
        default=0, ge=0, le=2**31 - 1, description="Seed of the sample and of k-means: same seed, same run"
    )


class KScore(BaseModel):
    k: int = Field(examples=[4])
    silhouette: float | None = Field(examples=[0.41], description="-1 … 1, higher is better separated")


class FeatureStats(BaseModel):
    unit: str = Field(examples=["minor units"])
    mean: float | None = Field(examples=[182_500.0], description="Over the cluster's customers")
    median: float | None = Field(examples=[150_000.0], description="Over the cluster's sampled customers")
    population_mean: float | None = Field(examples=[41_200.0])
    population_median: float | None = Field(examples=[22_000.0])
    z: float = Field(
        examples=[1.8],
        description="The cluster centre in population standard deviations (after log1p for money and counts)",
    )


class ClusterProfile(BaseModel):
    cluster: int = Field(examples=[3], description="0 is the largest cluster")
    size: int = Field(examples=[412])
    share: float = Field(examples=[0.04])
    label: str = Field(examples=["High spend, frequent, recent — 4% of customers"])
    description: str = Field(
        examples=[
            "412 customers (4%): Net spend averages 182,500 minor units against 41,200 minor units overall, "
            "4.4× the average (median 150,000 minor units); purchases averages 11.2 purchases against 2.9 "
            "purchases overall. Money in EUR, minor units."
        ]
    )
    features: dict[str, FeatureStats]


class ClusterRunOut(BaseModel):
    id: str
    created_at: datetime
    k: int = Field(examples=[4])
    features: list[str] = Field(examples=[["recency_days", "frequency", "monetary_minor"]])
    currency: str | None = Field(examples=["EUR"])
    population: int = Field(examples=[10_412], description="Customers assigned")
    sample_size: int = Field(examples=[10_000], description="Customers the model was fitted on")
    random_state: int = Field(examples=[0])
    silhouette: float | None = Field(examples=[0.41], description="Of the chosen k, on the sample")
    k_scores: list[KScore]
    sizes: list[int] = Field(examples=[[6100, 2900, 1000, 412]])
    clusters: list[ClusterProfile]
    params: dict[str, Any] = Field(description="The request's options, as applied")


class CustomerClusterOut(BaseModel):
    customer_id: str
    run_id: str
    run_created_at: datetime
    cluster: int = Field(examples=[3])
    label: str = Field(examples=["High spend, frequent, recent — 4% of customers"])
    description: str
    distance: float = Field(examples=[0.8], description="To the cluster centre, in standardised units")


class ClusterFeatureOut(BaseModel):
    name: str = Field(examples=["monetary_minor"])
    title: str = Field(examples=["Net spend"])
    unit: str = Field(examples=["minor units"])
    description: str
    log1p: bool = Field(description="Compressed with log1p before standardising")
    default: bool = Field(description="In the default feature set")


class ClusterFeatureList(BaseModel):
    items: list[ClusterFeatureOut]


# ---- playbooks ------------------------------------------------------------------------------------

EXAMPLE_TREE: dict[str, Any] = {
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

EXAMPLE_PLAYBOOKS: dict[str, dict[str, Any]] = {
    "retention": {
        "summary": "Lapsing customers: call the valuable ones, send the others an offer",
        "value": {
            "name": "Retention",
            "description": "Next best action for customers drifting away",
            "tree": EXAMPLE_TREE,
        },
    },
    "segment_and_window": {
        "summary": "Conditions may use any rule: windows, in_segment, all/any/not",
        "value": {
            "name": "Upsell regulars",
            "tree": {
                "condition": {
                    "all": [
                        {"purchases": {"within_days": 90, "at_least": 3}},
                        {"field": "ladder_stage", "op": ">=", "value": "client"},
                    ]
                },
                "then": {"action": "upsell_offer", "params": {"catalogue": "premium"}},
                "else": {"action": "no_action"},
            },
        },
    },
}


class PlaybookIn(BaseModel):
    """A playbook to create or replace."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Retention"])
    description: str | None = Field(default=None, max_length=2000)
    tree: dict[str, Any] = Field(
        description='The decision tree: `{"condition": rule, "then": node, "else": node}` or '
        '`{"action": "name", "params": {...}}` (see the playbooks module documentation)',
        examples=[EXAMPLE_TREE],
    )


class PlaybookOut(BaseModel):
    id: str
    name: str
    description: str | None
    tree: dict[str, Any]
    version: int = Field(description="1 on creation, +1 on every replacement")
    source: str = Field(examples=["staff"], description="`staff` (written) or `learned` (fitted)")
    training: dict[str, Any] | None = Field(
        description="For a learned playbook: target, samples, accuracy and feature importances"
    )
    actions: list[str] = Field(examples=[["no_action", "retention_call"]], description="Every action used")
    created_at: datetime
    updated_at: datetime


class PlaybookList(BaseModel):
    items: list[PlaybookOut]


class PathStep(BaseModel):
    node: str = Field(examples=["tree.then"], description="The decision's place in the tree")
    label: str | None = Field(examples=["Lapsing?"])
    condition: Any = Field(examples=[{"field": "days_since_last_purchase", "op": ">", "value": 90}])
    observed: dict[str, Any] = Field(
        examples=[{"days_since_last_purchase": 134}],
        description="The customer's value of every field the condition compares (null: missing)",
    )
    result: bool = Field(examples=[True], description="true: the `then` branch was taken")


class NextBestActionOut(BaseModel):
    customer_id: str
    playbook_id: str
    playbook_version: int
    action: str = Field(examples=["win_back_offer"])
    params: dict[str, Any] = Field(examples=[{"discount_percent": 15}])
    leaf: str = Field(examples=["tree.then.else"], description="The action's place in the tree")
    leaf_label: str | None
    path: list[PathStep] = Field(description="Every decision taken, root first")
    evaluated_at: datetime


class LeafAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(examples=["retention_call"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"priority": "high"}])


class LearnActions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    true: str | LeafAction = Field(
        description="The action of leaves predicting the target", examples=["retention_call"]
    )
    false: str | LeafAction = Field(description="The action of the other leaves", examples=["no_action"])


class PlaybookLearnIn(BaseModel):
    """What to learn: a target label, the features the tree may test, and the leaves' actions."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["Churn prevention (learned)"])
    description: str | None = Field(default=None, max_length=2000)
    target: Literal["churned", "high_risk", "valuable", "segment"] = Field(
        description="`churned`: lapsed now; `high_risk`: risk level high; `valuable`: value tier top or "
        "high; `segment`: member of `segment_id`",
        examples=["churned"],
    )
    segment_id: str | None = Field(default=None, description="With `target: segment`")
    features: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="Numeric or boolean fields of `GET /segments/catalogue`; default: all of them",
        examples=[["days_since_last_purchase", "purchase_count", "net_spend_minor", "complaint_count"]],
    )
    population: dict[str, Any] | None = Field(
        default=None,
        description="A rule restricting the training customers (segment rule language); default: all",
        examples=[{"field": "purchase_count", "op": ">=", "value": 1}],
    )
    actions: LearnActions
    max_depth: int = Field(default=3, ge=1, le=6, description="Decisions on the longest path")
    min_samples_leaf: int = Field(default=5, ge=1, le=100_000, description="Customers per leaf, at least")
    balanced: bool = Field(default=False, description="Weigh both classes equally (a rare target)")
    sample_cap: int = Field(default=100_000, ge=10, le=1_000_000, description="Training rows, at most")
    random_state: int = Field(default=0, ge=0, le=2**31 - 1)
    save: bool = Field(default=True, description="false: return the learned tree without saving it")


class LearnOut(BaseModel):
    playbook: PlaybookOut | None = Field(description="The saved playbook (null with `save: false`)")
    tree: dict[str, Any]
    training: dict[str, Any] = Field(
        examples=[
            {
                "target": "churned",
                "samples": 5000,
                "positives": 800,
                "accuracy": 0.93,
                "importances": {"days_since_last_purchase": 0.81, "purchase_count": 0.19},
            }
        ]
    )


EXAMPLE_LEARN: dict[str, dict[str, Any]] = {
    "churn": {
        "summary": "Who should get a retention call",
        "value": {
            "name": "Churn prevention (learned)",
            "target": "churned",
            "features": ["days_since_last_purchase", "purchase_count", "net_spend_minor", "complaint_count"],
            "population": {"field": "purchase_count", "op": ">=", "value": 1},
            "actions": {
                "true": {"action": "retention_call", "params": {"priority": "high"}},
                "false": "no_action",
            },
            "max_depth": 3,
        },
    },
    "segment": {
        "summary": "Explain a segment as a tree",
        "value": {
            "name": "VIP look-alikes",
            "target": "segment",
            "segment_id": "6f1c2a9e-8b1d-4a5e-9a63-1f0c7d2b4e11",
            "actions": {"true": "vip_invitation", "false": "no_action"},
            "max_depth": 2,
            "save": False,
        },
    },
}
EXAMPLE_RUNS: dict[str, dict[str, Any]] = {
    "auto_k": {"summary": "Let the silhouette choose k between 3 and 8", "value": {"k_range": [3, 8]}},
    "fixed": {
        "summary": "Five clusters on value features only",
        "value": {"k": 5, "features": ["recency_days", "frequency", "monetary_minor"], "currency": "EUR"},
    },
}
