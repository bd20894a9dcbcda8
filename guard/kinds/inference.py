"""Inference components (models sharing an endpoint's instances): the registry entry.

An endpoint built for inference components bills its instances (Hosting); the money is shown on
its components, each by its share of the instances (see `guard.scanners.inference`), and the
endpoint kind leaves such an endpoint to them: it is judged by its components, never twice.
"""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec, RestoreSpec

INFERENCE_COMPONENT = KindSpec(
    name="inference_component",
    title="inference component",
    price_component="Hosting",  # its endpoint's instances
    list_operation="list_inference_components",
    describe_operation="describe_inference_component",
    read_permissions=(
        "sagemaker:ListInferenceComponents",
        "sagemaker:DescribeInferenceComponent",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:Search",  # the hosting endpoints by the page (guard.scanners.search)
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:inference-component/*",
    name_param="InferenceComponentName",
    list_key="InferenceComponents",
    arn_field="InferenceComponentArn",
    name_field="InferenceComponentName",
    status_field="InferenceComponentStatus",
    type_field="InstanceType",  # its endpoint variant's
    tagging_type="sagemaker:inference-component",
    running_states=("InService", "Updating"),
    console_path="sagemaker/home?region={region}#/inference-components/{name}",
    scanner="guard.scanners.inference:scan",
    simulator="guard.sim.inference:InferenceSeeding",
    evidence="the last CloudWatch Invocations datapoint of the component (InferenceComponentName)",
    actions={
        "scale-to-zero": ActionSpec(
            name="scale-to-zero",
            operation="update_inference_component_runtime_config",
            permission="sagemaker:UpdateInferenceComponentRuntimeConfig",
            valid_states=("InService",),
            done_states=(),
            verb_past="scaled to zero copies",
            verb_would="would scale to zero copies",
            keeps=(
                "The component, its model and its endpoint are kept; "
                "`cost-guard restore component {name}` brings its copies back."
            ),
            # the endpoint's managed-scaling minimum is lowered to 0 through a new endpoint
            # config (a copy of its own with MinInstanceCount 0) when it was the last user
            extra_permissions=(
                "sagemaker:DescribeEndpoint",
                "sagemaker:DescribeEndpointConfig",
                "sagemaker:ListInferenceComponents",
                "sagemaker:CreateEndpointConfig",
                "sagemaker:UpdateEndpoint",
            ),
            handler="guard.inference_actions:scale_to_zero",
        ),
    },
    # AWS bills a component's instances as its endpoint's Hosting: the Price List has no
    # product of its own for components. `hosting` is the endpoint entry's claim (one claim per
    # value), so this entry names the value a component product would carry; none does today.
    price_list_components={"inferencecomponent": "Hosting"},
    restore=RestoreSpec(
        command="component",
        function="guard.inference_actions:restore_component",
        error="guard.inference_actions:RestoreError",
        help="Bring back an inference component's copies (and its endpoint's minimum).",
    ),
)

ENTRIES = (INFERENCE_COMPONENT,)
