"""Each service's rollout while a release deploys: deployment state, task counts, new service events,
and, when a rollout fails, why its last tasks stopped.

Read with ecs:DescribeServices, ecs:ListTasks and ecs:DescribeTasks only (no task definition, no
execution history: nothing CI may not read). Which deployment is the release's: the `deploymentId`
the record names once UpdateService returned; before that (or from a record that has none), the
PRIMARY deployment when it was created after the release started, since the lease keeps any other
release from updating the service meanwhile. Older deploy roles without these rights: one warning
line, and the release is followed from its record alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from release import contract
from release.aws import aws_errors, error_code
from release.record import Record, parse_time

# DescribeServices takes at most 10 services a call; DescribeTasks at most 100 tasks.
_SERVICES_PER_CALL = 10
# Stopped tasks shown for a failed rollout (the newest first): enough to see a pattern.
STOPPED_TASKS_SHOWN = 3
_DENIED = ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation")


@dataclass
class ServiceState:
    """What a person watching a rollout wants to see about one service, now."""

    app: str
    service: str
    deployment: str = ""  # the deployment id ("ecs-svc/…"), once known
    state: str = "waiting"  # waiting | IN_PROGRESS | COMPLETED | FAILED | the record's outcome
    running: int = 0
    pending: int = 0
    desired: int = 0
    failed_tasks: int = 0
    reason: str = ""  # rolloutStateReason, or the record's reason
    last_event: str = ""
    stopped: list[str] = field(default_factory=list)  # "task <id>: <why>" of the newest stopped tasks

    def line(self) -> str:
        text = f"{self.app}: {self.state}"
        if self.deployment:
            text += f" ({self.deployment})"
        if self.desired or self.running or self.pending:
            text += f", running {self.running}/{self.desired}, pending {self.pending}"
        if self.failed_tasks:
            text += f", {self.failed_tasks} failed task(s)"
        return text

    def key(self) -> tuple[Any, ...]:
        return (self.deployment, self.state, self.running, self.pending, self.desired, self.failed_tasks)

    def as_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "service": self.service,
            "deployment": self.deployment or None,
            "state": self.state,
            "running": self.running,
            "pending": self.pending,
            "desired": self.desired,
            "failedTasks": self.failed_tasks,
            "reason": self.reason or None,
            "lastEvent": self.last_event or None,
            "stoppedTasks": list(self.stopped),
        }


class ProgressReporter(Protocol):
    def service_changed(self, when: datetime, state: ServiceState) -> None: ...

    def service_event(self, when: datetime, app: str, message: str) -> None: ...

    def warning(self, text: str) -> None: ...


def release_apps(record: Record) -> list[str]:
    """The apps this release deploys: those with a digest (known after the images phase) and any
    the record already lists."""
    apps = [app for app in record.digests if app != contract.MIGRATE_APP]
    return apps + [app for app in record.services if app not in apps]


@dataclass
class ServiceProgress:
    ecs: Any
    cluster: str
    services: dict[str, str]  # app -> ECS service name
    reporter: ProgressReporter
    states: dict[str, ServiceState] = field(default_factory=dict)
    enabled: bool = True
    _seen_events: set[str] = field(default_factory=set)
    _reported: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def poll(self, record: Record | None) -> None:
        """Read the services of a release in its deploy phase and report what changed."""
        if not self.enabled or record is None or record.phase not in ("deploy", "record", "done"):
            return
        since = record.started_at or datetime.now(UTC)
        apps = [app for app in release_apps(record) if app in self.services]
        for start in range(0, len(apps), _SERVICES_PER_CALL):
            chunk = apps[start : start + _SERVICES_PER_CALL]
            described = self._describe([self.services[app] for app in chunk])
            if described is None:
                return
            for app in chunk:
                service = described.get(self.services[app])
                if service is not None:
                    self._update(app, service, record, since)

    def _describe(self, names: list[str]) -> dict[str, dict[str, Any]] | None:
        try:
            with aws_errors("reading the services"):
                try:
                    answer = self.ecs.describe_services(cluster=self.cluster, services=names)
                except ClientError as exc:
                    if error_code(exc) in _DENIED:
                        self._disable("no ecs:DescribeServices right: following the release record only")
                        return None
                    raise
        except Exception as exc:  # a read for display only never ends the follow
            self._disable(f"services not shown from here on: {getattr(exc, 'message', exc)}")
            return None
        return {str(s["serviceName"]): dict(s) for s in answer.get("services", [])}

    def _disable(self, why: str) -> None:
        self.enabled = False
        self.reporter.warning(why)

    def _update(self, app: str, service: dict[str, Any], record: Record, since: datetime) -> None:
        state = self.states.setdefault(app, ServiceState(app, self.services[app]))
        recorded = record.services.get(app, {})
        deployment = _deployment(service, str(recorded.get("deploymentId") or ""), since)
        if deployment is not None:
            state.deployment = str(deployment.get("id") or "")
            state.state = str(deployment.get("rolloutState") or deployment.get("status") or "IN_PROGRESS")
            state.running = int(deployment.get("runningCount") or 0)
            state.pending = int(deployment.get("pendingCount") or 0)
            state.desired = int(deployment.get("desiredCount") or 0)
            state.failed_tasks = int(deployment.get("failedTasks") or 0)
            state.reason = str(deployment.get("rolloutStateReason") or "")
        outcome = str(recorded.get("outcome") or "")
        if outcome in ("deployed", "failed"):
            state.state = outcome if deployment is None else state.state
            state.reason = str(recorded.get("reason") or state.reason)
        now = datetime.now(UTC)
        for event in sorted(service.get("events") or [], key=lambda e: _when(e.get("createdAt")) or since):
            created = _when(event.get("createdAt"))
            event_id = str(event.get("id") or f"{created}:{event.get('message')}")
            if event_id in self._seen_events or created is None or created < since:
                continue
            self._seen_events.add(event_id)
            state.last_event = str(event.get("message") or "")
            self.reporter.service_event(created, app, state.last_event)
        failed = state.state == "FAILED" or outcome == "failed"
        if failed and not state.stopped:
            state.stopped = self._stopped_tasks(state, since)
        if self._reported.get(app) != (*state.key(), len(state.stopped)):
            self._reported[app] = (*state.key(), len(state.stopped))
            self.reporter.service_changed(now, state)

    def _stopped_tasks(self, state: ServiceState, since: datetime) -> list[str]:
        """Why the newest stopped tasks of the release's deployment stopped (ECS keeps stopped tasks
        listed for at least an hour)."""
        try:
            with aws_errors("reading the stopped tasks"):
                arns = self.ecs.list_tasks(cluster=self.cluster, serviceName=state.service, desiredStatus="STOPPED").get("taskArns", [])
                if not arns:
                    return []
                tasks = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns[:100]).get("tasks", [])
        except Exception as exc:  # display only
            return [f"stopped tasks not readable: {getattr(exc, 'message', exc)}"]
        ours = [
            t
            for t in tasks
            if t.get("group") in (None, f"service:{state.service}")
            and (not state.deployment or t.get("startedBy") in (None, state.deployment))
            and (_when(t.get("createdAt")) or since) >= since
        ]
        ours.sort(key=lambda t: _when(t.get("stoppedAt")) or since, reverse=True)
        return [_stop_reason(t) for t in ours[:STOPPED_TASKS_SHOWN]]


def _deployment(service: dict[str, Any], deployment_id: str, since: datetime) -> dict[str, Any] | None:
    deployments = service.get("deployments") or []
    if deployment_id:
        return next((dict(d) for d in deployments if d.get("id") == deployment_id), None)
    primary = next((dict(d) for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is not None and (_when(primary.get("createdAt")) or since) >= since:
        return primary
    return None


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_time(value)


def _stop_reason(task: dict[str, Any]) -> str:
    why = str(task.get("stoppedReason") or task.get("stopCode") or "stopped")
    containers = [
        f"{c.get('name')}: "
        + (f"exit {c['exitCode']}" if c.get("exitCode") is not None else "")
        + (f" {c['reason']}" if c.get("reason") else "")
        for c in task.get("containers") or []
        if c.get("exitCode") not in (None, 0) or c.get("reason")
    ]
    text = f"task {str(task.get('taskArn', '')).rsplit('/', 1)[-1]}: {why}"
    return text + (f" ({'; '.join(c.strip() for c in containers)})" if containers else "")
