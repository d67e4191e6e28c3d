"""The example environment as the fakes know it: repositories, task definitions, services."""

from __future__ import annotations

from dataclasses import dataclass

from emulation.fakes import ACCOUNT, REGION, FakeAws

MIGRATE_REPOSITORY = "cashsouk-migrate"
MIGRATE_FAMILY = "cashsouk-migrate"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"
DATABASE = "cashsouk-db"  # config/example.yaml, database.existing.instance_identifier


@dataclass(frozen=True)
class App:
    key: str
    repository: str
    service: str
    family: str


APPS = [
    App("api", "api-cashsouk", "api-cashsouk-09ff", "api-cashsouk"),
    App("admin", "admin-cashsouk", "admin-cashsouk-544e", "admin-cashsouk"),
    App("investor", "investor-cashsouk", "investor-cashsouk-50e5", "investor-cashsouk"),
    App("issuer", "issuer-cashsouk", "issuer-cashsouk-ff47", "issuer-cashsouk"),
    App("landing", "landing-cashsouk", "landing-cashsouk-1156", "landing-cashsouk"),
]
BY_KEY = {a.key: a for a in APPS}


def container(name: str, image: str, group: str, prefix: str) -> dict[str, object]:
    return {
        "name": name,
        "image": image,
        "essential": True,
        "environment": [{"name": "NODE_ENV", "value": "production"}],
        "secrets": [{"name": "DATABASE_URL", "valueFrom": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:db-AbCdEf"}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {"awslogs-group": group, "awslogs-region": REGION, "awslogs-stream-prefix": prefix},
        },
    }


def build_world(fake: FakeAws, tags: tuple[str, ...] = ("abc1234",), *, circuit_breaker: bool = True) -> FakeAws:
    """Images for `tags` in every repository, a migrate family, five services on revision 1.

    The roles are the example environment's: the migrate task definition's from the synthesized
    template when the interpreter knows it (`fake.migrate_roles`), the services' as config/example.yaml
    names them (only the API has a task role), so the release's iam:PassRole is checked against
    the roles it will really pass."""
    task_role, execution_role = fake.migrate_roles
    for tag in tags:
        fake.push_image(MIGRATE_REPOSITORY, tag)
        for app in APPS:
            fake.push_image(app.repository, tag)
    fake.add_task_definition(
        {
            "family": MIGRATE_FAMILY,
            "taskRoleArn": task_role,
            "executionRoleArn": execution_role,
            "networkMode": "awsvpc",
            "requiresCompatibilities": ["FARGATE"],
            "cpu": "256",
            "memory": "512",
            "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
            "containerDefinitions": [
                container(
                    "migrate",
                    f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{MIGRATE_REPOSITORY}:release-renders-this",
                    "/ecs/cashsouk-migrate",
                    "migrate",
                )
            ],
        },
        tags=[{"key": "project", "value": "cashsouk"}],
    )
    for app in APPS:
        roles = {"taskRoleArn": f"arn:aws:iam::{ACCOUNT}:role/cashsouk-{app.key}-task"} if app.key == "api" else {}
        arn = fake.add_task_definition(
            {
                "family": app.family,
                **roles,
                "executionRoleArn": EXECUTION_ROLE,
                "networkMode": "awsvpc",
                "requiresCompatibilities": ["FARGATE"],
                "cpu": "1024",
                "memory": "2048",
                "containerDefinitions": [
                    container("Main", f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{app.repository}:old", f"/ecs/{app.family}", "ecs")
                ],
            }
        )
        fake.add_service(app.service, arn, circuit_breaker=circuit_breaker, rollback=circuit_breaker)
    fake.add_database(DATABASE)
    return fake
