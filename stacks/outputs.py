"""Stack outputs are CI's interface: each is exported as `<stack name>-<key>`."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack


def export(stack: Stack, key: str, value: str, description: str) -> CfnOutput:
    return CfnOutput(stack, key, value=value, description=description, export_name=f"{stack.stack_name}-{key}")
