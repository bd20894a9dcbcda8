"""Parents of child jobs: hyperparameter tuning jobs and AutoML (V2) jobs, the registry entries.

A person launches the parent; SageMaker launches its training jobs. So the parent is what is
listed, priced (its running children's instances, at the Training price) and acted on: its
stop stops every running child. The children stay visible to the training-job scanner, which
defers to the parent (`JobShape.parents`): it neither prices nor warns about them.
"""

from __future__ import annotations

from guard.kinds.spec import ActionSpec, KindSpec

EVIDENCE = (
    "none needed: a job works until it ends; its runtime and how many child training jobs run"
)
DONE = ("Stopping", "Stopped", "Completed", "Failed")

TUNING_JOB = KindSpec(
    name="tuning_job",
    title="hyperparameter tuning job",
    price_component="Training",  # its children are training jobs
    list_operation="list_hyper_parameter_tuning_jobs",
    describe_operation="describe_hyper_parameter_tuning_job",
    read_permissions=(
        "sagemaker:ListHyperParameterTuningJobs",
        "sagemaker:DescribeHyperParameterTuningJob",
        "sagemaker:Search",  # new jobs' records by the page (guard.scanners.search)
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:hyper-parameter-tuning-job/*",
    name_param="HyperParameterTuningJobName",
    list_key="HyperParameterTuningJobSummaries",
    arn_field="HyperParameterTuningJobArn",
    name_field="HyperParameterTuningJobName",
    status_field="HyperParameterTuningJobStatus",
    type_field="InstanceType",  # of its training job definition, from Describe
    tagging_type="sagemaker:hyper-parameter-tuning-job",
    running_states=("InProgress",),
    console_path="sagemaker/home?region={region}#/hyper-tuning-jobs/{name}",
    scanner="guard.scanners.tuning:scan",
    simulator="guard.sim.tuning:TuningSeeding",
    evidence=EVIDENCE,
    idles=False,
    actions={
        "stop": ActionSpec(
            name="stop",
            operation="stop_hyper_parameter_tuning_job",
            permission="sagemaker:StopHyperParameterTuningJob",
            valid_states=("InProgress",),
            done_states=DONE,
            verb_past="stopped",
            verb_would="would stop",
            keeps=(
                "Its completed training jobs, their models and the best one so far are kept; "
                "its running training jobs stop with it."
            ),
        ),
    },
    list_params={"StatusEquals": "InProgress"},
    # The Price List has no product of its own for it: its children are billed as Training.
    price_list_components={"hyperparametertuning": "Training"},
)

AUTOML_JOB = KindSpec(
    name="automl_job",
    title="AutoML job",
    price_component="Training",  # its candidates are training jobs
    list_operation="list_auto_ml_jobs",
    describe_operation="describe_auto_ml_job_v2",  # AWS answers it for V1 jobs too
    read_permissions=(
        "sagemaker:ListAutoMLJobs",
        "sagemaker:DescribeAutoMLJobV2",
        "sagemaker:ListTrainingJobs",  # its running children: training jobs naming it
        "sagemaker:DescribeTrainingJob",
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:automl-job/*",
    name_param="AutoMLJobName",
    list_key="AutoMLJobSummaries",
    arn_field="AutoMLJobArn",
    name_field="AutoMLJobName",
    status_field="AutoMLJobStatus",
    type_field="InstanceType",  # of its running children (AutoML chooses them)
    tagging_type="sagemaker:automl-job",
    running_states=("InProgress",),
    console_path="sagemaker/home?region={region}#/automl-jobs/{name}",
    scanner="guard.scanners.tuning:scan",
    simulator="guard.sim.tuning:TuningSeeding",
    evidence=EVIDENCE,
    idles=False,
    actions={
        "stop": ActionSpec(
            name="stop",
            operation="stop_auto_ml_job",
            permission="sagemaker:StopAutoMLJob",
            valid_states=("InProgress",),
            done_states=DONE,
            verb_past="stopped",
            verb_would="would stop",
            keeps=(
                "The candidates and models trained so far stay in its S3 output; "
                "its running training jobs stop with it."
            ),
        ),
    },
    list_params={"StatusEquals": "InProgress"},
    price_list_components={"automl": "Training"},
)

ENTRIES = (TUNING_JOB, AUTOML_JOB)
