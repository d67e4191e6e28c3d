"""Environment configuration: one YAML file per environment, validated before anything is built.

`load_config("prod")` reads `config/prod.yaml`. Every mistake in the file is reported at once, one
line each naming the file and the setting as the user wrote it (with a suggestion for a misspelt
key), so `cdk synth` fails before a single construct exists.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from release.limits import ReleaseBounds, release_limit_problem

CONFIG_DIR = Path(__file__).resolve().parent
DEFAULT_ENV = "example"
STACK_UNITS = ("data", "images", "release", "ci")

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
AccountId = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Region = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")]
VpcId = Annotated[str, StringConstraints(pattern=r"^vpc-[0-9a-f]{8,17}$")]
SubnetId = Annotated[str, StringConstraints(pattern=r"^subnet-[0-9a-f]{8,17}$")]
SecurityGroupId = Annotated[str, StringConstraints(pattern=r"^sg-[0-9a-f]{8,17}$")]
SecretArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")]
RoleArn = Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")]
RepositoryName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")]
EcsName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,255}$")]
# A path inside the repository: no leading '/', no segment starting with '.' (so no '..').
MIGRATIONS_PATH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"
RULE_PATTERN = r"^[a-z][a-z0-9-]*$"
# CloudWatch Logs accepts only these retention periods.
RetentionDays = Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653]
# Fargate's valid CPU/memory pairs (MiB) for the sizes a migration plausibly needs.
FARGATE_SIZES = {256: (512, 1024, 2048), 512: tuple(range(1024, 4097, 1024)), 1024: tuple(range(2048, 8193, 1024))}


class ConfigError(Exception):
    """Configuration problems, each already phrased as one line for a person.

    `str()` is the one line when there is one problem; with several, a heading line and then one
    line per problem, so a caller printing it shows them all.
    """

    def __init__(self, problems: list[str], heading: str = "") -> None:
        self.problems = problems
        text = problems[0] if len(problems) == 1 else "\n".join([heading, *(f"  {p}" for p in problems)])
        super().__init__(text)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExistingVpc(_Strict):
    vpc_id: VpcId
    private_subnet_ids: list[SubnetId] = Field(min_length=2)
    availability_zones: list[str] = Field(min_length=2)

    @model_validator(mode="after")
    def _one_zone_per_subnet(self) -> ExistingVpc:
        if len(self.private_subnet_ids) != len(self.availability_zones):
            raise ValueError("private_subnet_ids and availability_zones must have the same length (one zone per subnet)")
        return self


class NewVpc(_Strict):
    cidr: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-4])$")] = "10.40.0.0/16"
    # Named, not counted: counting would make synth ask AWS which zones exist.
    availability_zones: list[str] = Field(min_length=2, max_length=3)
    nat_gateways: int = Field(default=1, ge=1, le=3)


class VpcConfig(_Strict):
    """Exactly one of `existing` (reference by ids) or `new` (create one)."""

    existing: ExistingVpc | None = None
    new: NewVpc | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VpcConfig:
        if (self.existing is None) == (self.new is None):
            raise ValueError("set exactly one of 'existing' or 'new'")
        return self


class ExistingDatabase(_Strict):
    instance_identifier: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")]
    endpoint: Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+\.rds\.amazonaws\.com$")]
    port: int = Field(default=5432, ge=1150, le=65535)
    security_group_id: SecurityGroupId
    # The schema owner's secret (keys `username`, `password`): migrations need ALTER rights.
    owner_secret_arn: SecretArn
    # The application user's secret (keys `username`, `password`): what RDS Proxy signs in with.
    app_secret_arn: SecretArn


class NewDatabase(_Strict):
    instance_type: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+\.[a-z0-9]+$")] = "t4g.small"
    postgres_major_version: Literal["15", "16", "17"] = "16"
    allocated_storage_gib: int = Field(default=20, ge=20, le=1000)
    multi_az: bool = True
    port: int = Field(default=5432, ge=1150, le=65535)
    app_username: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")] = "app"


class DatabaseConfig(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
    existing: ExistingDatabase | None = None
    new: NewDatabase | None = None
    # Security groups of the services that may reach the proxy (the apps' tasks).
    client_security_group_ids: list[SecurityGroupId] = Field(default_factory=list)
    # RDS Proxy IAM auth is REQUIRED-or-DISABLED for PostgreSQL: turn on once the apps sign in with
    # IAM tokens instead of the app user's password.
    proxy_iam_auth: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> DatabaseConfig:
        if (self.existing is None) == (self.new is None):
            raise ValueError("set exactly one of 'existing' or 'new'")
        return self


class AppConfig(_Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,19}$")]
    repository: RepositoryName
    service: EcsName
    container: EcsName
    uses_schema: bool = False
    # Roles of the service's task definition: a release registers a new revision with them.
    task_role_arn: RoleArn | None = None
    execution_role_arn: RoleArn | None = None
    # Apps whose rollout must complete before this one's starts (when both are in the release).
    after: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]{0,19}$")]] = Field(default_factory=list)

    @property
    def output_suffix(self) -> str:
        return self.name.capitalize()


class MigrateConfig(_Strict):
    repository: RepositoryName
    family: EcsName
    cpu: Literal[256, 512, 1024] = 256
    memory_mib: int = 512
    architecture: Literal["ARM64", "X86_64"] = "ARM64"
    command: Annotated[str, StringConstraints(min_length=1)] = "npx prisma migrate deploy"
    timeout_minutes: int = Field(default=15, ge=1, le=120)
    lock_wait_seconds: int = Field(default=600, ge=0, le=7200)
    # Optional: a secret holding a whole DATABASE_URL (the team's existing secret), instead of
    # the schema owner's username/password keys.
    database_url_secret_arn: SecretArn | None = None
    # The migration owner's secret (keys `username`, `password`): a role that owns the schema and
    # is NOT the master user (docs/migrations.md has the SQL). Unset: the database's owner secret.
    owner_secret_arn: SecretArn | None = None
    # TLS of the runner's lock session and of the command's URL (verify-* use the image's RDS CA bundle).
    ssl_mode: Literal["verify-full", "verify-ca", "require"] = "verify-full"
    # How the command's URL spells TLS: Prisma's engine ignores verify-* (falls back to prefer).
    url_tls: Literal["prisma", "libpq"] = "prisma"
    # How long the runner retries transient connect errors (an RDS failover takes 30-120 s).
    connect_wait_seconds: int = Field(default=120, ge=0, le=900)

    @model_validator(mode="after")
    def _lock_wait_leaves_time_to_migrate(self) -> MigrateConfig:
        # Past the time limit ECS stops the task: the runner should give up waiting first and say who
        # holds the lock, with at least a minute left for the migration itself.
        if self.lock_wait_seconds > self.timeout_minutes * 60 - 60:
            raise ValueError(
                f"lock_wait_seconds {self.lock_wait_seconds} must leave at least 60 s of the {self.timeout_minutes}-minute time limit"
            )
        return self

    @model_validator(mode="after")
    def _fargate_size(self) -> MigrateConfig:
        if self.memory_mib not in FARGATE_SIZES[self.cpu]:
            raise ValueError(
                f"memory_mib {self.memory_mib} is not a Fargate size for cpu {self.cpu}: use one of {list(FARGATE_SIZES[self.cpu])}"
            )
        return self


class ReleaseConfig(_Strict):
    lease_wait_minutes: int = Field(default=20, ge=0, le=240)
    rollout_timeout_minutes: int = Field(default=30, ge=5, le=240)
    keep_images: int = Field(default=30, ge=5, le=1000)
    # Services rolling out at once after the migration (a Map's MaxConcurrency); 1 is one at a time.
    max_parallel_rollouts: int = Field(default=5, ge=1, le=10)
    # How long a release started with --snapshot waits for its manual snapshot before migrating.
    snapshot_timeout_minutes: int = Field(default=60, ge=5, le=240)


class ReviewConfig(_Strict):
    """What the pull-request workflow checks besides the templates (docs/ci.md, "Migration lint")."""

    # Where the app repository keeps Prisma's migrations (`<path>/<timestamp>_<name>/migration.sql`).
    migrations_path: Annotated[str, StringConstraints(pattern=MIGRATIONS_PATH_PATTERN)] = "prisma/migrations"
    # squawk rules to leave out (squawk's own rule names). prefer-robust-stmts asks for statements
    # that can run twice; Prisma never re-runs an applied migration, and a failed one waits for a
    # person (`prisma migrate resolve`), so it is left out by default.
    squawk_excluded_rules: list[Annotated[str, StringConstraints(pattern=RULE_PATTERN)]] = Field(
        default_factory=lambda: ["prefer-robust-stmts"]
    )


class NotificationsConfig(_Strict):
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    # Outside the sandbox a failure topic nobody reads is refused; say here why it is acceptable
    # (for example: "subscribed by hand to the on-call pager") to allow it.
    unsubscribed_reason: Annotated[str, StringConstraints(min_length=10)] | None = None


class GithubConfig(_Strict):
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")]
    deploy_branch: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./-]+$")] = "main"
    # The GitHub environment the deploy jobs declare; the deploy role trusts only its OIDC subject
    # (`repo:<repository>:environment:<name>`), and its protection rule admits only deploy_branch.
    deploy_environment: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,255}$")] = "production"
    # Reference the account's existing GitHub OIDC provider; None creates one.
    oidc_provider_arn: Annotated[str, StringConstraints(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/.+$")] | None = None


class EnvironmentConfig(_Strict):
    env_name: Name
    name_prefix: Name
    account: AccountId
    region: Region
    vpc: VpcConfig
    database: DatabaseConfig
    cluster_name: EcsName
    apps: list[AppConfig] = Field(min_length=1)
    migrate: MigrateConfig
    log_retention_days: RetentionDays = 30
    release: ReleaseConfig = ReleaseConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    review: ReviewConfig = ReviewConfig()
    github: GithubConfig

    @model_validator(mode="after")
    def _consistent_apps(self) -> EnvironmentConfig:
        for field in ("name", "repository", "service"):
            values = [getattr(app, field) for app in self.apps]
            duplicates = sorted({v for v in values if values.count(v) > 1})
            if duplicates:
                raise ValueError(f"apps: duplicate {field} {', '.join(duplicates)}")
        if self.migrate.repository in {app.repository for app in self.apps}:
            raise ValueError("migrate.repository must differ from every app's repository")
        if not any(app.uses_schema for app in self.apps):
            raise ValueError("apps: at least one app must have uses_schema: true (the default release targets)")
        return self

    @model_validator(mode="after")
    def _failures_reach_someone(self) -> EnvironmentConfig:
        # Failed releases, dead-lettered end events and failed cleanups all go to the failure topic
        # (docs/release.md); the sandbox may leave it unread, nothing else may without a reason.
        if self.env_name != "sandbox" and self.notifications.email is None and self.notifications.unsubscribed_reason is None:
            raise ValueError(
                "notifications.email: set a subscriber for the failure topic (or notifications.unsubscribed_reason to say why nobody needs one)"
            )
        return self

    @model_validator(mode="after")
    def _rollout_order(self) -> EnvironmentConfig:
        names = [app.name for app in self.apps]
        for i, app in enumerate(self.apps):
            unknown = [n for n in app.after if n not in names]
            if unknown:
                raise ValueError(f"apps[{i}].after: unknown app {', '.join(unknown)} (apps: {', '.join(names)})")
        cycle = rollout_cycle({app.name: app.after for app in self.apps})
        if cycle:
            raise ValueError(f"apps[{names.index(cycle[0])}].after: a cycle, {' -> '.join(cycle)}")
        return self

    @model_validator(mode="after")
    def _within_release_limits(self) -> EnvironmentConfig:
        # The AWS limits the release state machine assumes (release/limits.py, docs/release.md).
        bounds = ReleaseBounds(
            services=len(self.apps),
            lease_wait_seconds=self.release.lease_wait_minutes * 60,
            migrate_timeout_seconds=self.migrate.timeout_minutes * 60,
            rollout_timeout_seconds=self.release.rollout_timeout_minutes * 60,
            snapshot_timeout_seconds=self.release.snapshot_timeout_minutes * 60,
        )
        problem = release_limit_problem(bounds)
        if problem:
            raise ValueError(f"release: {problem}")
        return self

    def stack_name(self, unit: str) -> str:
        if unit not in STACK_UNITS:
            raise ValueError(f"unknown stack unit {unit!r}")
        return f"{self.name_prefix}-{self.env_name}-{unit}"

    def app(self, name: str) -> AppConfig:
        return next(app for app in self.apps if app.name == name)


def rollout_cycle(after: dict[str, list[str]]) -> list[str]:
    """One cycle among the apps' `after` lists, as a path that returns to its start, or []."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done

    def visit(name: str, path: list[str]) -> list[str]:
        state[name] = 1
        for nxt in after.get(name, []):
            if state.get(nxt) == 1:
                on_path = [*path, name]
                return [*on_path[on_path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt, [*path, name])
                if found:
                    return found
        state[name] = 2
        return []

    for name in after:
        if name not in state:
            found = visit(name, [])
            if found:
                return found
    return []


def github_role_name(name_prefix: str, env_name: str, kind: str) -> str:
    """The ci stack's GitHub Actions role `kind` ("deploy" or "review").

    A fixed name, so a workflow knows which role to assume from the config alone, before it has any
    credentials to read stack outputs with.
    """
    return f"{name_prefix}-{env_name}-github-{kind}"


# What a pattern means, in the words of the field's documentation (never the regex itself).
_PATTERN_MEANINGS = {
    NAME_PATTERN: "2-32 lowercase letters, digits and '-', starting with a letter",
    r"^\d{12}$": 'a 12-digit AWS account id, quoted ("123456789012")',
    r"^[a-z]{2}(-[a-z]+)+-\d$": "an AWS region such as ap-southeast-5",
    r"^vpc-[0-9a-f]{8,17}$": "a VPC id (vpc-0123456789abcdef0)",
    r"^subnet-[0-9a-f]{8,17}$": "a subnet id (subnet-0123456789abcdef0)",
    r"^sg-[0-9a-f]{8,17}$": "a security group id (sg-0123456789abcdef0)",
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$": "a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME)",
    r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$": "an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)",
    r"^arn:aws[a-z-]*:iam::\d{12}:oidc-provider/.+$": "an IAM OIDC provider ARN (arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com)",
    r"^[^@\s]+@[^@\s]+\.[^@\s]+$": "an email address",
    MIGRATIONS_PATH_PATTERN: "a folder inside the repository (like prisma/migrations; no '..')",
    RULE_PATTERN: "a squawk rule name (like prefer-robust-stmts)",
}


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _known_keys(location: tuple[int | str, ...]) -> list[str]:
    """The setting names allowed where `location` points (for "did you mean")."""
    model: Any = EnvironmentConfig
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [name for name in model.model_fields if name != "env_name"]
    return []


def _model_of(annotation: Any) -> Any:
    """The BaseModel inside `X`, `X | None` or `list[X]`, else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _problem(error: Any, lines: Any = None) -> str:
    """One pydantic error as `line N: <setting>: <what is wrong>` in the file's terms (`lines`:
    the composed YAML document, for the line)."""
    location = tuple(error["loc"])
    kind = error["type"]
    message = str(error["msg"]).removeprefix("Value error, ")
    # A check across settings raised at the top level names its setting first ("release: …"):
    # that setting is where the problem is.
    named = re.match(r"([a-z_]+)(?:\.[a-z_]+)*: ", message) if not location else None
    if named:
        location = tuple(named.group(0)[:-2].split("."))
        message = message[named.end() :]
    where = _line_of(lines, location)
    prefix = f"line {where}: " if where else ""
    if kind == "extra_forbidden":
        unknown = str(location[-1])
        close = difflib.get_close_matches(unknown, _known_keys(location), n=1, cutoff=0.6)
        message = "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")
    elif kind == "missing":
        message = "required setting is missing"
    elif kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern", ""))
        meaning = _PATTERN_MEANINGS.get(pattern, "a value of the documented form")
        message = f"{error.get('input')!r} is not {meaning}"
    return f"{prefix}{_field_path(location)}: {message}"


def _line_of(node: Any, location: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the setting at `location` in a composed YAML document (the deepest
    part that exists: a missing setting is reported where its section is)."""
    line = None
    for part in location:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _duplicate_keys(node: Any) -> list[str]:
    """`line N: duplicate key 'x' (first on line M)` for every mapping of the document (YAML allows
    none, PyYAML keeps the last one silently)."""
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                line = key.start_mark.line + 1
                if key.value in first:
                    problems.append(f"line {line}: duplicate key {key.value!r} (first on line {first[key.value]})")
                else:
                    first[key.value] = line
            problems += _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            problems += _duplicate_keys(item)
    return problems


def _text_of(path: Path, shown: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([f"{shown}: the file is UTF-16 text; save it as UTF-8"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{shown}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"]) from None


def _yaml_problem(shown: Path, exc: yaml.YAMLError) -> str:
    """The line the mistake is on: where an unclosed bracket or quote opened, not the end of file."""
    problem = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    what = str(getattr(exc, "problem", None) or exc)
    if problem is None:
        return f"{shown}: not valid YAML ({what})"
    line = problem.line + 1
    opened = str(getattr(exc, "context", "") or "")
    # An unclosed bracket or quote is noticed lines later (often at the end of the file): the
    # mistake is where it opened.
    if context is not None and ("flow" in opened or "quoted scalar" in opened):
        return f"{shown}: line {context.line + 1}: not valid YAML ({opened.removeprefix('while ')} not closed: {what})"
    return f"{shown}: line {line}: not valid YAML ({what})"


def _check_env_name(env_name: str, config_dir: Path, shown: Path) -> None:
    if re.fullmatch(NAME_PATTERN, env_name):
        return
    hint = ""
    if env_name.lower() != env_name and (config_dir / f"{env_name.lower()}.yaml").is_file():
        hint = f" (did you mean {env_name.lower()}?)"
    what = f"{shown} does not exist" if not (config_dir / f"{env_name}.yaml").is_file() else f"{shown} cannot be used"
    raise ConfigError(
        [f"environment {env_name!r}: {what}; environment names are 2-32 lowercase letters, digits and '-', starting with a letter{hint}"]
    )


# SafeLoader's rules with libyaml's parser where PyYAML has it (its wheels do): the same documents,
# parsed about ten times faster; every CLI command reads the config. A syntax error is reported as
# the pure-Python parser words it, which also shows the offending line.
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _pure_python_error(text: str, error: yaml.YAMLError) -> yaml.YAMLError:
    try:
        yaml.compose(text, Loader=yaml.SafeLoader)
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return error


def load_config(env_name: str, config_dir: Path = CONFIG_DIR) -> EnvironmentConfig:
    """Read and validate `<config_dir>/<env_name>.yaml`; raise ConfigError listing every problem."""
    if not env_name or "/" in env_name or env_name.startswith("."):
        raise ConfigError([f"invalid environment name {env_name!r}: use the name of a file in config/ without .yaml"])
    path = config_dir / f"{env_name}.yaml"
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    _check_env_name(env_name, config_dir, shown)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml"))) or "none"
        close = difflib.get_close_matches(env_name, [p.stem for p in config_dir.glob("*.yaml")], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ConfigError([f"{shown}: no such environment file (known environments: {known}){hint}"])
    text = _text_of(path, shown)
    try:
        document = yaml.compose(text, Loader=_FAST_LOADER)
        raw = yaml.load(text, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader (SafeLoader's rules in C)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(shown, _pure_python_error(text, exc))]) from None
    duplicates = [f"{shown}: {problem}" for problem in _duplicate_keys(document)]
    if duplicates:
        raise ConfigError(duplicates, heading=f"{shown}: {len(duplicates)} problems:")
    if not isinstance(raw, dict):
        raise ConfigError([f"{shown}: expected a mapping of settings at the top level"])
    if "env_name" in raw:
        raise ConfigError([f"{shown}: env_name: do not set it, it is the file's name ({env_name})"])
    try:
        config = EnvironmentConfig.model_validate({"env_name": env_name, **raw})
    except ValidationError as exc:
        problems = [f"{shown}: {_problem(error, document)}" for error in exc.errors()]
        raise ConfigError(problems, heading=f"{shown}: {len(problems)} problems:") from None
    _refuse_shared_deploy_subject(config, config_dir, shown)
    return config


def _deploy_subject_key(github: Any) -> tuple[str, str, str] | None:
    """What the deploy role's OIDC subject is made of (constructs/ci_access.py): repository,
    GitHub environment (names are case-insensitive) and branch; None if the file does not say."""
    if not isinstance(github, dict) or not isinstance(github.get("repository"), str):
        return None
    fields = GithubConfig.model_fields
    environment = github.get("deploy_environment", fields["deploy_environment"].default)
    branch = github.get("deploy_branch", fields["deploy_branch"].default)
    return (str(github["repository"]).lower(), str(environment).lower(), str(branch))


def _refuse_shared_deploy_subject(config: EnvironmentConfig, config_dir: Path, shown: Path) -> None:
    """Two environments whose deploy roles trust one subject are one environment to IAM: a deploy
    job of either could assume both roles."""
    mine = _deploy_subject_key(config.github.model_dump())
    for other in sorted(config_dir.glob("*.yaml")):
        if other.stem == config.env_name:
            continue
        try:
            raw = yaml.safe_load(other.read_text())
        except (OSError, yaml.YAMLError):
            continue  # that file's own load reports it
        if isinstance(raw, dict) and _deploy_subject_key(raw.get("github")) == mine:
            raise ConfigError(
                [
                    f"{shown}: github.deploy_environment: {config.github.deploy_environment!r} is also {other.name}'s "
                    "(same repository and branch): both deploy roles would trust one OIDC subject; give each environment its own"
                ]
            )
