"""The VPC the tasks and the proxy live in: an existing one referenced by ids, or a new one."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Annotations, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs

from config import VpcConfig
from constructs import Construct


class Network(Construct):
    """Exposes `vpc` and `private_subnets` (where migrations and the proxy run, no public IPs)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: VpcConfig, log_retention: logs.RetentionDays) -> None:
        super().__init__(scope, construct_id)
        if config.existing is not None:
            existing = config.existing
            # from_vpc_attributes, not from_lookup: synth stays offline and the ids stay reviewable.
            self.vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=existing.vpc_id,
                availability_zones=existing.availability_zones,
                private_subnet_ids=existing.private_subnet_ids,
            )
            Annotations.of(self).acknowledge_warning(
                "@aws-cdk/aws-ec2:noSubnetRouteTableId",
                "Nothing here adds routes to the existing subnets, so their route tables are not needed.",
            )
        else:
            assert config.new is not None
            vpc = ec2.Vpc(
                self,
                "Vpc",
                ip_addresses=ec2.IpAddresses.cidr(config.new.cidr),
                availability_zones=config.new.availability_zones,
                nat_gateways=config.new.nat_gateways,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                    ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                    ec2.SubnetConfiguration(name="database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
                ],
            )
            # The zones are named in the config, not looked up, so that synth needs no AWS account:
            # the subnets then name them, which CDK's template validation flags (W3010).
            Validations.of(vpc).acknowledge(
                Acknowledgment(
                    id="CloudFormation-Validate::W3010",
                    reason="Zones are named in config/<env>.yaml (vpc.new.availability_zones) so that synth runs offline.",
                )
            )
            flow_logs = logs.LogGroup(self, "FlowLogs", retention=log_retention)
            stack = Stack.of(self)
            # Our own delivery role: only VPC Flow Logs, for this account's flow logs, may assume it
            # (AWS's confused-deputy guard; the flow log's id is known only once it exists).
            flow_role = iam.Role(
                self,
                "FlowLogRole",
                description="VPC Flow Logs delivery to the flow-log group, for this account's flow logs only",
                assumed_by=iam.ServicePrincipal("vpc-flow-logs.amazonaws.com").with_conditions(
                    {
                        "StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": stack.format_arn(service="ec2", resource="vpc-flow-log", resource_name="*")},
                    }
                ),
            )
            vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs, flow_role))
            self.vpc = vpc
        self.private_subnets = ec2.SubnetSelection(subnets=self.vpc.private_subnets)
