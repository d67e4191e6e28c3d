"""A synthesized template's state machine definitions, resolved as CloudFormation would create them.

`resolve_definition` turns a DefinitionString (an Fn::Join of strings, Refs and GetAtts, possibly
Fn::ImportValue across stacks) into the JSON document CloudFormation would create, with
plausible values for every token; nothing is copied by hand. Used by the tests, the diagram tool,
the committed ASL document (docs/release-definition.asl.json) and the benchmark.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from emulation.fakes import ACCOUNT, REGION

PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "stack",
    "AWS::NoValue": "",
}


class Resolver:
    """Values for a template's tokens, as CloudFormation would substitute them."""

    def __init__(self, templates: dict[str, dict[str, Any]], stack_name: str) -> None:
        self.templates = templates
        self.stack_name = stack_name
        self.template = templates[stack_name]

    def _resource(self, logical_id: str) -> dict[str, Any]:
        return dict(self.template.get("Resources", {}).get(logical_id, {}))

    def ref(self, logical_id: str) -> str:  # noqa: PLR0911 - one return per resource type
        if logical_id in PSEUDO:
            return PSEUDO[logical_id]
        if logical_id in self.template.get("Parameters", {}):
            return str(self.template["Parameters"][logical_id].get("Default", logical_id))
        resource = self._resource(logical_id)
        kind, props = resource.get("Type", ""), resource.get("Properties", {})
        named = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SSM::Parameter": "Name",
            "AWS::ECR::Repository": "RepositoryName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::IAM::Role": "RoleName",
            "AWS::EC2::SecurityGroup": None,
        }
        key = named.get(kind)
        if key and key in props:
            return str(self.value(props[key]))
        if kind == "AWS::EC2::SecurityGroup":
            return "sg-0" + logical_id.lower()[-16:]
        if kind == "AWS::StepFunctions::StateMachine":
            return f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{self.value(props.get('StateMachineName', logical_id))}"
        if kind == "AWS::KMS::Key":
            return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.stack_name}/{logical_id}"))
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.value(props.get('QueueName', logical_id.lower()))}"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{self.value(props.get('TopicName', logical_id.lower()))}"
        return logical_id.lower()

    def get_att(self, logical_id: str, attribute: str) -> str:  # noqa: PLR0911 - one return per resource type
        resource = self._resource(logical_id)
        kind = resource.get("Type", "")
        name = self.ref(logical_id)
        if kind == "AWS::ECR::Repository":
            if attribute == "Arn":
                return f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}"
            if attribute == "RepositoryUri":
                return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT}:role/{name}"
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{self.value(resource.get('Properties', {}).get('Name', name))}"
        if kind == "AWS::KMS::Key" and attribute == "Arn":
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{name}"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name.rsplit('/', 1)[-1]}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return name.rsplit("/", 1)[-1]
        return f"{name}-{attribute.lower()}"

    def import_value(self, export_name: str) -> Any:
        for stack_name, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export", {}).get("Name")
                if export is not None and Resolver(self.templates, stack_name).value(export) == export_name:
                    return Resolver(self.templates, stack_name).value(output["Value"])
        raise KeyError(f"no stack exports {export_name}")

    def value(self, node: Any) -> Any:  # noqa: PLR0911, PLR0912 - one branch per intrinsic function
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(logical_id, attribute)
            if key == "Fn::Join":
                separator, parts = arg
                return str(separator).join(str(self.value(p)) for p in self.value(parts))
            if key == "Fn::Select":
                index, items = arg
                return self.value(items)[int(self.value(index))]
            if key == "Fn::Split":
                separator, text = arg
                return str(self.value(text)).split(separator)
            if key == "Fn::ImportValue":
                return self.import_value(self.value(arg))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                for name, val in variables.items():
                    text = text.replace("${" + name + "}", str(self.value(val)))
                for name in set(re.findall(r"\$\{([^}!]+)\}", text)):
                    if "." in name:
                        logical_id, attribute = name.split(".", 1)
                        text = text.replace("${" + name + "}", self.get_att(logical_id, attribute))
                    else:
                        text = text.replace("${" + name + "}", self.ref(name))
                return text
        return {k: self.value(v) for k, v in node.items()}


def state_machines(templates: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """{StateMachineName: (stack name, logical id)} of every state machine in the templates."""
    found = {}
    for stack_name, template in templates.items():
        for logical_id, resource in template.get("Resources", {}).items():
            if resource.get("Type") == "AWS::StepFunctions::StateMachine":
                name = Resolver(templates, stack_name).value(resource["Properties"].get("StateMachineName", logical_id))
                found[str(name)] = (stack_name, logical_id)
    return found


def resolve_definition(templates: dict[str, dict[str, Any]], state_machine_name: str) -> dict[str, Any]:
    stack_name, logical_id = state_machines(templates)[state_machine_name]
    resolver = Resolver(templates, stack_name)
    props = templates[stack_name]["Resources"][logical_id]["Properties"]
    text = resolver.value(props["DefinitionString"])
    for name, val in (props.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + name + "}", str(resolver.value(val)))
    definition: dict[str, Any] = json.loads(text)
    return definition
