"""What GitHub Actions may do in one environment: the OIDC provider and the deploy/review roles.

Deploys after the release stack (it names the state machine, the repositories and the migrate
log group, the release record's table and the machine's data key). The roles have fixed names (config.github_role_name), so the workflows
derive their ARNs from the config; the outputs `DeployRoleArn` and `ReviewRoleArn` show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ecr as ecr

from config import STACK_UNITS, EnvironmentConfig, github_role_name
from constructs import Construct
from constructs.ci_access import CiAccess
from stacks.outputs import export


class CiStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        state_machine_arn: str,
        history_table_arn: str,
        data_key_arn: str,
        service_arns: Sequence[str],
        repositories: Sequence[ecr.IRepository],
        migrate_log_group_name: str,
        lease_table_arn: str | None = None,
        released_parameter_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.access = CiAccess(
            self,
            "GithubActions",
            deploy_role_name=github_role_name(config.name_prefix, config.env_name, "deploy"),
            review_role_name=github_role_name(config.name_prefix, config.env_name, "review"),
            github_repository=config.github.repository,
            deploy_environment=config.github.deploy_environment,
            deploy_branch=config.github.deploy_branch,
            oidc_provider_arn=config.github.oidc_provider_arn,
            state_machine_arn=state_machine_arn,
            history_table_arn=history_table_arn,
            data_key_arn=data_key_arn,
            service_arns=service_arns,
            repositories=repositories,
            migrate_log_group_name=migrate_log_group_name,
            stack_names=[config.stack_name(unit) for unit in STACK_UNITS],
            lease_table_arn=lease_table_arn,
            released_parameter_arn=released_parameter_arn,
            cluster_name=config.cluster_name,
        )
        export(
            self, "DeployRoleArn", self.access.deploy_role.role_arn, "GitHub Actions role of the deploy workflow (its GitHub environment)"
        )
        export(
            self, "ReviewRoleArn", self.access.review_role.role_arn, "GitHub Actions role for pull requests (reads the templates, cdk diff)"
        )
