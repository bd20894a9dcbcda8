"""Real-time inference endpoints: the registry entry."""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec, RestoreSpec

ENDPOINT = KindSpec(
    name="endpoint",
    title="endpoint",
    price_component="Hosting",
    list_operation="list_endpoints",
    describe_operation="describe_endpoint",
    read_permissions=(
        "sagemaker:ListEndpoints",
        "sagemaker:DescribeEndpoint",
        "sagemaker:DescribeEndpointConfig",
        "sagemaker:Search",  # endpoint records by the page (guard.scanners.search)
        "tag:GetResources",
        "cloudwatch:GetMetricData",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:endpoint/*",
    name_param="EndpointName",
    list_key="Endpoints",
    arn_field="EndpointArn",
    name_field="EndpointName",
    status_field="EndpointStatus",
    type_field="InstanceType",  # per variant, from the endpoint config
    tagging_type="sagemaker:endpoint",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/endpoints/{name}",
    scanner="guard.scanners.endpoint:scan",
    simulator="guard.sim.endpoints:EndpointSeeding",
    evidence=(
        "the last CloudWatch Invocations datapoint of any of its variants, and for an "
        "asynchronous endpoint the last one with requests queued (ApproximateBacklogSize)"
    ),
    actions={
        "delete": ActionSpec(
            name="delete",
            operation="delete_endpoint",
            permission="sagemaker:DeleteEndpoint",
            valid_states=("InService",),
            done_states=("Deleting",),
            verb_past="deleted",
            verb_would="would delete",
            keeps=(
                "Its endpoint config and model are kept; "
                "`cost-guard restore endpoint {name}` recreates it."
            ),
            gone_is_done=True,
            extra_permissions=("sagemaker:DescribeEndpointConfig", "sagemaker:ListTags"),
            handler="guard.endpoint_actions:delete",
        ),
        "scale-to-zero": ActionSpec(
            name="scale-to-zero",
            operation="update_endpoint_weights_and_capacities",
            permission="sagemaker:UpdateEndpointWeightsAndCapacities",
            valid_states=("InService",),
            done_states=(),
            verb_past="scaled to zero instances",
            verb_would="would scale to zero instances",
            keeps="The endpoint stays; it scales up again when traffic returns.",
            # an asynchronous endpoint: MinCapacity 0 through Application Auto Scaling
            extra_permissions=(
                "application-autoscaling:DescribeScalableTargets",
                "application-autoscaling:RegisterScalableTarget",
                "application-autoscaling:DeregisterScalableTarget",
            ),
            handler="guard.endpoint_actions:scale_to_zero",
        ),
    },
    price_list_components={"hosting": "Hosting"},
    # asynchronous endpoints: `USE1-AsyncInf:ml.…` (see guard/scanners/endpoint.py)
    price_usage_operations={"host": "Hosting", "asyncinf": "AsyncInference"},
    restore=RestoreSpec(
        command="endpoint",
        function="guard.endpoint_actions:restore_endpoint",
        error="guard.endpoint_actions:RestoreError",
        help="Recreate a deleted endpoint with its endpoint config and tags.",
        permissions=("sagemaker:CreateEndpoint",),
    ),
)

ENTRIES = (ENDPOINT,)
