"""The release's end as a chat notification: both rules publish Amazon Q Developer's documented
custom-notification JSON (version 1.0, source custom) to the topic, and only those two may."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.support import Synthesized


@pytest.fixture(scope="module")
def release(synthesized: Synthesized) -> Template:
    return synthesized.template("example", "release")


def _rules(template: Template) -> dict[str, dict[str, Any]]:
    rules = template.find_resources("AWS::Events::Rule")
    return {r["Properties"]["Name"]: dict(r) for r in rules.values() if r["Properties"]["Name"].endswith(("-failed", "-succeeded"))}


def _template_text(rule: dict[str, Any]) -> tuple[dict[str, str], str]:
    (target,) = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]
    template = transformer["InputTemplate"]
    text = template if isinstance(template, str) else "".join(p if isinstance(p, str) else "<REGION>" for p in template["Fn::Join"][1])
    return transformer["InputPathsMap"], text


@pytest.mark.parametrize(("suffix", "statuses"), [("-failed", ["FAILED", "TIMED_OUT", "ABORTED"]), ("-succeeded", ["SUCCEEDED"])])
def test_each_end_is_a_custom_chat_notification(release: Template, suffix: str, statuses: list[str]) -> None:
    (rule,) = [r for name, r in _rules(release).items() if name.endswith(suffix)]
    assert rule["Properties"]["EventPattern"]["detail"]["status"] == statuses
    paths, text = _template_text(rule)
    assert {"detail-name", "detail-status", "detail-executionArn"} <= set(paths)
    # EventBridge puts each <field> in place (a whole JSON value is quoted as a string); with them
    # filled in, the document is the schema's.
    filled = re.sub(r"(?<=[\[:,])<[A-Za-z-]+>(?=[\]},])", '"x"', text)
    for field in paths:
        filled = filled.replace(f"<{field}>", "x")
    document = json.loads(filled.replace("<REGION>", "ap-southeast-5"))
    assert (document["version"], document["source"], document["content"]["textType"]) == ("1.0", "custom", "client-markdown")
    assert "python -m release status --env example" in document["content"]["nextSteps"]
    assert "console.aws.amazon.com/states/home?region=ap-southeast-5#/v2/executions/details/x" in document["content"]["description"]
    assert document["metadata"]["relatedResources"] == ["x"]
    assert "detail-cause" not in paths  # free text stays out of the JSON template (status shows it)


def test_only_the_two_rules_publish(release: Template) -> None:
    (policy,) = release.find_resources("AWS::SNS::TopicPolicy").values()
    allow = next(s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow")
    sources = json.dumps(allow["Condition"]["ArnEquals"]["aws:SourceArn"])
    assert sources.count(":rule/") == 2 and "-failed" in sources and "-succeeded" in sources
