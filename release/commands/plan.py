"""`plan`: what a release of a tag would do, read-only, and every blocker it would hit.

Per service: the digest running now → the one the tag names (unchanged ones marked), whether the
migration runs and with which image, and the blockers: a missing image, a service without the
circuit breaker and rollback (or not on the rolling-update controller), the lease held, another
release running. The running digests come from the release record of the last successful release
that deployed the service (or the released parameter); task definitions are never read, because
they may hold secrets (issue 9.6).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from rich.table import Table

from release import contract
from release.aws import Aws, aws_errors, error_code
from release.commands.common import Context, records_of, release_outputs
from release.commands.status import owner_status, read_lease, read_released
from release.errors import ExitCode, ReleaseError
from release.hold import read_hold
from release.naming import validate_services, validate_tag
from release.record import RecordTable
from release.report import make_console, short_digest

NAME = "plan"
HELP = "What a release of a tag would do (read-only): digests per service, the migration, every blocker."
UNKNOWN = "unknown (not released by this tool)"
# How far back to look for the release that last deployed each service.
_RECORDS_SEARCHED = 200


@dataclass
class ServicePlan:
    app: str
    service: str
    running: str | None
    running_from: str
    new: str | None

    @property
    def unchanged(self) -> bool:
        return self.running is not None and self.running == self.new


@dataclass
class Blocker:
    code: int
    text: str


@dataclass
class Plan:
    env: str
    image_tag: str
    migrate: bool
    migrate_image: str | None
    services: list[ServicePlan] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for item, service in zip(data["services"], self.services, strict=True):
            item["unchanged"] = service.unchanged
        return data


def add_arguments(parser: argparse.ArgumentParser, poll_interval: Callable[[str], float]) -> None:
    parser.add_argument("--image-tag", required=True, metavar="TAG", help="the tag the release would deploy")
    parser.add_argument("--services", nargs="+", metavar="APP", help="the apps it would deploy (default: the apps that use the schema)")
    parser.add_argument("--no-migrate", action="store_true", help="plan a release without the migration")
    parser.add_argument("--format", choices=("table", "json", "github"), default="table", help="table (default), json, or Markdown")


def image_digest(aws: Aws, repository: str, tag: str) -> str | None:
    with aws_errors(f"reading image {repository}:{tag}"):
        try:
            details = aws.client("ecr").describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
        except ClientError as exc:
            if error_code(exc) in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
    return str(details[0]["imageDigest"]) if details else None


def running_digests(records: RecordTable, apps: list[str], released: str | None) -> dict[str, tuple[str, str]]:
    """app -> (digest, where it was read) for the apps a successful release of this tool deployed."""
    found: dict[str, tuple[str, str]] = {}
    for record in records.newest(_RECORDS_SEARCHED):
        if record.status != contract.STATUS_SUCCEEDED:
            continue
        for app in record.deployed_apps:
            if app in apps and app not in found and record.digests.get(app):
                found[app] = (record.digests[app], f"release {record.name}")
        if len(found) == len(apps):
            return found
    try:
        parameter = json.loads(released or "{}")
    except ValueError:
        parameter = {}
    digests = parameter.get("digests") if isinstance(parameter, dict) else None
    for app, digest in (digests or {}).items() if isinstance(digests, dict) else []:
        if app in apps and app not in found and digest:
            found[app] = (str(digest), "released parameter")
    return found


def service_blockers(aws: Aws, cluster: str, services: dict[str, str]) -> tuple[list[Blocker], list[str]]:
    """Blockers from ecs:DescribeServices (no task definition is read); notes when it is not allowed."""
    blockers: list[Blocker] = []
    names = list(services.values())
    app_of = {service: app for app, service in services.items()}
    ecs = aws.client("ecs")
    for start in range(0, len(names), 10):  # DescribeServices takes at most 10 services a call
        try:
            answer = ecs.describe_services(cluster=cluster, services=names[start : start + 10])
        except ClientError as exc:
            if error_code(exc) in ("AccessDeniedException", "AccessDenied"):
                return blockers, ["services not checked: no ecs:DescribeServices right (circuit breaker and controller unknown)"]
            with aws_errors("reading the services"):
                raise
        for failure in answer.get("failures", []):
            name = str(failure.get("arn", "")).rsplit("/", 1)[-1]
            blockers.append(Blocker(ExitCode.DEPLOYMENT_FAILED, f"{app_of.get(name, name)}: service {name} not found in cluster {cluster}"))
        for service in answer.get("services", []):
            blockers += _service_problems(app_of.get(service["serviceName"], service["serviceName"]), service)
    return blockers, []


def _service_problems(app: str, service: dict[str, Any]) -> list[Blocker]:
    name = service["serviceName"]
    if service.get("status") != "ACTIVE":
        return [Blocker(ExitCode.DEPLOYMENT_FAILED, f"{app}: service {name} is {service.get('status')}")]
    problems = []
    controller = (service.get("deploymentController") or {}).get("type", "ECS")
    if controller != "ECS":
        problems.append(
            Blocker(
                ExitCode.DEPLOYMENT_FAILED,
                f"{app}: service {name} uses the {controller} deployment controller; a release needs ECS (rolling update)",
            )
        )
    configuration = service.get("deploymentConfiguration") or {}
    breaker = configuration.get("deploymentCircuitBreaker") or {}
    if not (breaker.get("enable") and breaker.get("rollback")):
        problems.append(
            Blocker(
                ExitCode.DEPLOYMENT_FAILED,
                f"{app}: service {name} has the deployment circuit breaker with rollback off; turn both on: {circuit_breaker_command(service)}",
            )
        )
    return problems


def circuit_breaker_command(service: dict[str, Any]) -> str:
    """The AWS CLI call that turns the circuit breaker and rollback on. It repeats the service's
    current percentages: AWS does not say whether UpdateService keeps the deployment
    configuration's fields a call leaves out, so none is left out."""
    configuration = service.get("deploymentConfiguration") or {}
    cluster = str(service.get("clusterArn") or "").rsplit("/", 1)[-1] or "default"
    parts = [f"{key}={configuration[key]}" for key in ("maximumPercent", "minimumHealthyPercent") if configuration.get(key) is not None]
    parts.append("deploymentCircuitBreaker={enable=true,rollback=true}")
    region = str(service.get("serviceArn") or "::::").split(":")[3]
    return (
        f"aws ecs update-service --region {region} --cluster {cluster} --service {service['serviceName']} "
        f"--deployment-configuration '{','.join(parts)}'"
    )


def release_blockers(aws: Aws, outputs: dict[str, str]) -> list[Blocker]:
    blockers: list[Blocker] = []
    hold = read_hold(aws, outputs[contract.OUTPUT_LEASE_TABLE_NAME])
    if hold is not None:
        blockers.append(Blocker(ExitCode.RELEASE_HELD, f"{hold.line()} (lift it: python -m release unhold --env {aws.env.env_name})"))
    sfn = aws.client("stepfunctions")
    with aws_errors("listing running releases"):
        running = sfn.list_executions(stateMachineArn=outputs[contract.OUTPUT_STATE_MACHINE_ARN], statusFilter="RUNNING", maxResults=10)
    for execution in running.get("executions", []):
        blockers.append(
            Blocker(
                ExitCode.RELEASE_IN_PROGRESS,
                f"release {execution['name']} is running (a new one waits for the lease, at most release.lease_wait_minutes)",
            )
        )
    lease = read_lease(aws, outputs)
    if lease:
        owner = str(lease.get("Owner", {}).get("S", ""))
        status = owner_status(aws, owner)
        if status == "RUNNING" and not any(owner.endswith(f":{e['name']}") for e in running.get("executions", [])):
            blockers.append(Blocker(ExitCode.RELEASE_IN_PROGRESS, f"the lease is held by {owner.rsplit(':', 1)[-1]}"))
        elif status != "RUNNING":
            blockers.append(
                Blocker(
                    ExitCode.RELEASE_IN_PROGRESS,
                    f"the lease is held by {owner.rsplit(':', 1)[-1] or '?'}, which is {status or 'gone'} "
                    f"(stale: free it with python -m release unlock --env {aws.env.env_name})",
                )
            )
    return blockers


def make_plan(ctx: Context, tag: str, apps: list[str], migrate: bool) -> Plan:
    aws = ctx.aws
    env = ctx.env
    aws.check_account()
    outputs = release_outputs(aws, contract.OUTPUT_LEASE_TABLE_NAME)
    repositories = {app.name: app.repository for app in env.apps}
    services = {app.name: app.service for app in env.apps if app.name in apps}
    plan = Plan(env=env.env_name, image_tag=tag, migrate=migrate, migrate_image=None)
    running = running_digests(records_of(aws, outputs), apps, read_released(aws, outputs))
    for app in apps:
        new = image_digest(aws, repositories[app], tag)
        digest, source = running.get(app, (None, UNKNOWN))
        plan.services.append(ServicePlan(app, services[app], digest, source, new))
        if new is None:
            plan.blockers.append(Blocker(ExitCode.IMAGE_NOT_FOUND, f"{app}: image {repositories[app]}:{tag} does not exist"))
    if migrate:
        plan.migrate_image = image_digest(aws, env.migrate_repository, tag)
        if plan.migrate_image is None:
            plan.blockers.append(Blocker(ExitCode.IMAGE_NOT_FOUND, f"migrate: image {env.migrate_repository}:{tag} does not exist"))
    cluster = outputs.get(contract.OUTPUT_CLUSTER_NAME) or env.cluster_name
    blockers, notes = service_blockers(aws, cluster, services)
    plan.blockers += blockers + release_blockers(aws, outputs)
    plan.notes += notes
    return plan


def render_table(plan: Plan) -> None:
    console = make_console()
    table = Table(title=f"Plan: release {plan.image_tag} to {plan.env}", title_justify="left")
    for column in ("app", "service", "running", "new", ""):
        table.add_column(column)
    for s in plan.services:
        mark = "unchanged" if s.unchanged else ("missing" if s.new is None else "changes")
        running = short_digest(s.running) if s.running else UNKNOWN
        table.add_row(s.app, s.service, running, short_digest(s.new) or "-", mark)
    console.print(table)
    console.print(f"Migration: {_migration_text(plan)}", markup=False)
    for note in plan.notes:
        console.print(f"Note: {note}", markup=False)
    if plan.blockers:
        console.print("Blockers:", markup=False)
        for blocker in plan.blockers:
            console.print(f"  ✗ {blocker.text}", markup=False)
    else:
        console.print("No blockers: the release can start.", markup=False)


def _migration_text(plan: Plan) -> str:
    if not plan.migrate:
        return "skipped (--no-migrate): the schema stays as it is"
    if plan.migrate_image is None:
        return "cannot run: the migrate image is missing"
    return f"runs first, with image {plan.migrate_image}"


def render_markdown(plan: Plan) -> str:
    lines = [
        f"### Release plan: `{plan.image_tag}` to `{plan.env}`",
        "",
        "| app | service | running | new | |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in plan.services:
        mark = "unchanged" if s.unchanged else ("**missing**" if s.new is None else "changes")
        running = f"`{short_digest(s.running)}`" if s.running else UNKNOWN
        new = f"`{short_digest(s.new)}`" if s.new else "-"
        lines.append(f"| {s.app} | {s.service} | {running} | {new} | {mark} |")
    lines += ["", f"Migration: {_migration_text(plan)}", ""]
    lines += [f"Note: {note}" for note in plan.notes]
    lines += [f"- :x: {b.text}" for b in plan.blockers] or ["No blockers: the release can start."]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, ctx: Context) -> int:
    tag = validate_tag(args.image_tag)
    requested = validate_services(args.services, ctx.env.app_names)
    apps = requested if requested is not None else [app.name for app in ctx.env.apps if app.uses_schema]
    if not apps:
        raise ReleaseError("no app to plan", ExitCode.USAGE)
    plan = make_plan(ctx, tag, apps, migrate=not args.no_migrate)
    if args.format == "json":
        print(json.dumps(plan.as_dict(), indent=2))
    elif args.format == "github":
        print(render_markdown(plan), end="")
    else:
        render_table(plan)
    return int(plan.blockers[0].code) if plan.blockers else int(ExitCode.OK)
