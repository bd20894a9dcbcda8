"""Storage that keeps billing after a stop: the registry entry.

Two things bill per GB-month while nothing runs on them: a stopped notebook instance's ML
storage volume (`VolumeSizeInGB`) and a Studio space's EBS volume (`EbsVolumeSizeInGb`) while
none of its apps runs. They are listed so people see them; the only rule action is `notify`:
the guard never deletes anyone's files (the kind has no mutating action at all).
"""

from __future__ import annotations

from guard.kinds.spec import KindSpec

NOTEBOOK_STORAGE = KindSpec(
    name="notebook_storage",
    title="storage volume",
    price_component="Storage",  # per GB-month: guard/data/storage_prices.csv (see the scanner)
    list_operation="list_notebook_instances",
    describe_operation="describe_notebook_instance",
    read_permissions=(
        "sagemaker:ListNotebookInstances",
        "sagemaker:DescribeNotebookInstance",
        "sagemaker:ListSpaces",
        "sagemaker:DescribeSpace",
        "sagemaker:ListApps",  # which spaces have an app running, and their last start
        "tag:GetResources",
    ),
    arn_pattern="arn:aws:sagemaker:*:*:notebook-instance/*",  # no action: never used in IAM
    name_param="NotebookInstanceName",
    list_key="NotebookInstances",
    arn_field="NotebookInstanceArn",
    name_field="NotebookInstanceName",
    status_field="NotebookInstanceStatus",
    type_field="VolumeSizeInGB",
    # and the spaces', by ARN: only those whose volume it lists (see the scanner)
    tagging_type="sagemaker:notebook-instance",
    running_states=("Stopped",),  # billed while stopped: that is what this kind is about
    console_path="sagemaker/home?region={region}#/{console}",
    scanner="guard.scanners.storage:scan",
    simulator="guard.sim.studio:StudioSeeding",  # spaces; notebooks are the base simulator's
    evidence=(
        "when its notebook instance or Studio space was last started (the guard's own "
        "snapshot of the notebook, the space's newest app in ListApps), else when it stopped"
    ),
    actions={},  # notify only: nothing is ever deleted
    # Lists every notebook instance (the scanner keeps the stopped ones): the same listing
    # as the notebook kind's, so a scan of both lists once (guard.scanning.list_all).
    # Priced per GB-month by the scanner (guard/data/storage_prices.csv; the Price List's
    # productFamily Storage items, `USE1-Studio:VolumeUsage.gp3`, are GB-Mo, which the hourly
    # refresh skips). The hourly parser only needs a name for the component.
    price_list_components={"mlstorage": "Storage"},
)

ENTRIES = (NOTEBOOK_STORAGE,)
