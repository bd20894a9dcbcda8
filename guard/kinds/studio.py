"""SageMaker Studio apps, every AppType (JupyterLab, Code Editor, KernelGateway, JupyterServer,
Canvas, RStudioServerPro, RSessionGateway, TensorBoard, DetailedProfiler): the registry entry."""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec

STUDIO_APP = KindSpec(
    name="studio_app",
    title="Studio app",
    price_component="Studio-{app_type}",  # Studio-JupyterLab, Studio-CodeEditor, ...
    list_operation="list_apps",
    describe_operation="describe_app",
    read_permissions=(
        "sagemaker:ListApps",
        "sagemaker:DescribeApp",
        "sagemaker:ListDomains",
        "sagemaker:DescribeDomain",
        "sagemaker:ListUserProfiles",
        "sagemaker:DescribeUserProfile",
        "sagemaker:ListSpaces",
        "sagemaker:DescribeSpace",
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:app/*",
    name_param="AppName",  # with DomainId, AppType and SpaceName/UserProfileName: details["key"]
    list_key="Apps",
    arn_field="AppArn",
    name_field="AppName",
    status_field="Status",
    type_field="InstanceType",  # ResourceSpec.InstanceType
    tagging_type="sagemaker:app",
    running_states=("InService",),
    console_path="sagemaker/home?region={region}#/studio/{domain_id}",  # the domain's page
    scanner="guard.scanners.studio:scan",
    simulator="guard.sim.studio:StudioSeeding",
    evidence="the heartbeat tag the shipped lifecycle scripts write on the app's space",
    heartbeat=True,
    actions={
        "delete": ActionSpec(
            name="delete",
            operation="delete_app",
            permission="sagemaker:DeleteApp",
            valid_states=("InService",),
            done_states=("Deleting", "Deleted"),
            verb_past="deleted",
            verb_would="would delete",
            keeps=(
                "The space and its storage volume remain: no files are lost, "
                "and the app can be started again from Studio."
            ),
            gone_is_done=True,
        ),
    },
    # Studio Classic's KernelGateway apps run on "Studio Notebook" instances; RStudio's usage
    # types read `RStudio:RSessionGateway-ml.t3.medium`.
    price_list_components={
        "studiojupyterlab": "Studio-JupyterLab",
        "studiocodeeditor": "Studio-CodeEditor",
        "studionotebook": "Studio-KernelGateway",
        "studiorsessiongateway": "Studio-RSessionGateway",
        "studiorstudioserverpro": "Studio-RStudioServerPro",
    },
    # Canvas is billed per session-hour (`<REGION>-Canvas:Session-Hrs` -> "canvas-session")
    price_usage_operations={"canvas": "Canvas"},
)

ENTRIES = (STUDIO_APP,)
