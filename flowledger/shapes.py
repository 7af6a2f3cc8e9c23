"""The JSON shapes of what flowledger answers: one set of pydantic models for the CLI's
``--json`` and the HTTP API (whose OpenAPI document they make).

The queries build plain dicts; these models say what those dicts are, and both ways out
pass them through :func:`shaped`, so the two can never drift apart.
"""

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "running", "paused", "completed", "failed", "cancelled"]
"""A run's status."""
StepState = Literal["completed", "failed", "idle", "running", "stopped"]
"""A step attempt's state."""
DeliveryStatus = Literal["queued", "sent", "delivered", "read", "opened", "clicked", "bounced", "failed"]
"""A delivery's status."""


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecipientRef(_Shape):
    """A recipient in a collection."""

    id: str
    collection: str


class RunRecord(_Shape):
    """One run, as `runs list` lists it."""

    id: str
    workflow: str
    recipient: str | RecipientRef
    tenant: str | None
    trigger_source: str
    workflow_run_id: str | None
    status: Status
    created_at: str
    scheduled_at: str | None
    executed_at: str | None = Field(description="When the run first started.")
    completed_at: str | None = Field(description="When the run last finished (cleared by a retry).")
    duration_seconds: float | None
    retry_count: int
    max_retries: int
    error_message: str | None = Field(description="The last error.")
    error_count: int = Field(description="Failed step attempts.")
    email_opened: bool | None = Field(description="Null until an email of the run is delivered.")
    email_opened_at: str | None
    email_clicked: bool | None
    email_clicked_at: str | None
    updated_at: str = Field(description="When the run's last event occurred (what `updated_before` filters on).")


class CommandRecorded(_Shape):
    """A retry or cancel that was recorded, but whose run record could not be read back
    (another process held the store's write lock past the lock timeout, say): what the log's
    rules know of the run after it. The command is done; a second one would be refused."""

    id: str
    status: Status | None = Field(default=None, description="The run's status after the command (left out if the log could not be read either).")
    retry_count: int | None = None
    max_retries: int | None = None
    recorded: Literal[True]
    detail: str = Field(description="Why the record could not be read back.")


class PageInfo(_Shape):
    """Cursors to the neighbouring pages (null where there is none)."""

    after: str | None = Field(description="The next page: older entries.")
    before: str | None = Field(description="The previous page: newer entries.")
    page_size: int


class RunPage(_Shape):
    """A page of runs, newest first."""

    entries: list[RunRecord]
    page_info: PageInfo


class StepAttempt(_Shape):
    """One attempt of one step of a run."""

    step: str
    step_type: str
    attempt: int
    status: StepState
    started_at: str
    finished_at: str | None
    duration_seconds: float | None
    error: str | None
    messages: list[str] = Field(description="The messages this attempt queued.")
    request: Any = Field(description="What an integration step sent (redacted).")
    response: Any = Field(description="What an integration step got back (redacted).")
    output: Any


class Delivery(_Shape):
    """One message: one outbound delivery attempt."""

    message_id: str
    channel: str | None
    provider: str | None
    recipient: str | RecipientRef | None
    run_id: str | None
    step: str | None
    status: DeliveryStatus | None
    queued_at: str | None
    sent_at: str | None
    delivered_at: str | None
    read_at: str | None
    opened_at: str | None
    clicked_at: str | None
    failed_at: str | None
    opens_total: int
    opens_unique: int
    clicks_total: int
    clicks_unique: int
    cost_amount: float | None
    cost_currency: str | None
    provider_message_id: str | None
    error: str | None
    ever_sent: bool
    updated_at: str | None
    human_opened_at: str | None = Field(description="The first open or click by a person (not a machine).")
    complained_at: str | None
    unsubscribed_at: str | None
    workflow: str | None


class DeliveryPage(_Shape):
    """A page of deliveries, newest first."""

    entries: list[Delivery]
    page_info: PageInfo


class RunEvent(_Shape):
    """One event of a run, as the API lists them with the run."""

    id: str
    type: str
    occurred_at: str
    attempt: int | None
    step: str | None
    step_type: str | None
    status: Literal["ok", "error"]
    data: dict[str, Any]


class RunDetail(RunRecord):
    """A run with its step trace and its deliveries (and, from the API, its events)."""

    steps: list[StepAttempt]
    deliveries: list[Delivery]
    events: list[RunEvent] | None = Field(
        default=None, description="From the API only: the run's events (left out on an analyst's copy: see events_in)."
    )
    events_in: str | None = Field(
        default=None,
        description="From the API only, and only on an analyst's copy made by `rebuild --into`: the store whose log holds "
        "the run's events (the copy has the views, not the log, so `events` is left out; ask that store for them).",
    )


class HistoryEntry(_Shape):
    """One event of a replay, with the run's record right after it."""

    n: int
    position: int
    event: dict[str, Any]
    status: Status | None = None
    state: dict[str, Any]


class HistoryPageInfo(_Shape):
    """Where a page of a replay ends (only when the replay was asked for by pages)."""

    after: int | None = Field(
        description="The next page: pass it as `after` (the log position of this page's last entry); null when no entries follow."
    )
    page_size: int


class RunHistory(_Shape):
    """The auditor's replay of a run (or, given page_size or after, a page of it)."""

    run_id: str
    events: list[HistoryEntry] = Field(description="In log order; n counts from 1.")
    page_info: HistoryPageInfo | None = Field(default=None, description="Only when paged (page_size or after given).")


class StatusCounts(_Shape):
    """Runs by status."""

    total: int
    pending: int
    running: int
    paused: int
    completed: int
    failed: int
    cancelled: int


class Counts(StatusCounts):
    """Runs by status across all workflows, and per workflow."""

    by_workflow: dict[str, StatusCounts]


class WorkflowSummary(_Shape):
    """A workflow in the list of workflows."""

    key: str
    status: Literal["idle", "running", "completed"]
    runs: StatusCounts
    first_run_at: str | None
    last_run_at: str | None


class WorkflowList(_Shape):
    """The workflows that have runs, in key order: every one, or a page of them."""

    entries: list[WorkflowSummary]
    next: str | None = Field(
        None, description="The next page's `after` (the last key of this page); null where this page is the last."
    )


class ChannelDetails(_Shape):
    """One channel of a workflow (fields beyond the first five depend on the channel)."""

    execution_count: int
    total_contacts: int
    sent: int
    failed: int
    success_rate: float | None
    estimated_cost: float | None = None
    costs_by_currency: dict[str, float] | None = None
    unpriced: int | None = None
    delivered: int | None = None
    bounced: int | None = None
    read: int | None = None
    delivery_rate: float | None = None
    bounce_rate: float | None = None
    read_rate: float | None = None
    opened: int | None = None
    opens_total: int | None = None
    clicked: int | None = None
    clicks_total: int | None = None
    open_rate: float | None = None
    click_rate: float | None = None
    human_opened: int | None = None
    human_open_rate: float | None = None
    complained: int | None = None
    unsubscribed: int | None = None


class Totals(_Shape):
    """A workflow's totals over its channels."""

    total_contacts: int
    total_sent: int
    total_failed: int
    overall_success_rate: float | None
    total_cost: float | None
    currency: str | None
    costs_by_currency: dict[str, float] | None = None


class Progress(_Shape):
    """How many of a workflow's runs have finished."""

    processed: int
    total: int
    percentage: float | None


class WorkflowDetails(_Shape):
    """The seed docs' workflow details."""

    key: str
    status: Literal["idle", "running", "completed"]
    created_at: str | None
    started_at: str | None
    completed_at: str | None
    duration_seconds: float | None
    workflow_executions_count: int
    runs: StatusCounts
    channels: dict[str, ChannelDetails]
    totals: Totals
    progress: Progress


class StateCounts(_Shape):
    """Step attempts by state."""

    completed: int
    failed: int
    idle: int
    running: int
    stopped: int


class NodeStats(StateCounts):
    """A node of the workflow graph."""

    step: str
    step_type: str | None
    channel: str | None


class EdgeStats(StateCounts):
    """Two consecutive steps of one run; counts the attempts the edge leads to."""

    from_: str = Field(alias="from")
    to: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExecutionStats(_Shape):
    """The seed docs' execution stats of one workflow."""

    workflow: str
    total: StateCounts
    nodes: list[NodeStats]
    edges: list[EdgeStats]


class DeadLetter(_Shape):
    """A webhook set aside from the inbox because it can never be appended."""

    seq: int = Field(description="Its place in the inbox.")
    received_at: str
    set_aside_at: str
    reason: str = Field(description="Why it was set aside: unreadable, invalid, or refused by the log.")
    n: int = Field(description="How many events it brought.")
    items: str = Field(description="Its events' JSON, as kept.")


class InboxReport(_Shape):
    """The webhook inbox: events waiting for the store's write lock, and the dead letters."""

    waiting: int
    dead_letters: list[DeadLetter] = Field(description="Oldest first.")


class UnmatchedEvent(_Shape):
    """A provider event waiting for its message."""

    event_id: str
    provider_message_id: str | None
    provider: str | None
    type: str
    occurred_at: str
    received_at: str | None


class UnmatchedList(_Shape):
    """Provider events waiting for their message, oldest first."""

    entries: list[UnmatchedEvent]


M = TypeVar("M", bound=BaseModel)


def shaped(model: type[M], data: Any) -> Any:
    """``data`` checked against its shape and returned as JSON-ready data, as it was."""
    return model.model_validate(data).model_dump(mode="json", by_alias=True, exclude_unset=True)
