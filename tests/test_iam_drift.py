"""The deployment templates' IAM is what `make iam` generates from the registry
(guard/iam_templates.py over guard.iam.policy); a template that drifts fails here."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from guard import iam_templates
from guard.iam_templates import BEGIN, END, LAMBDA_TEMPLATE, MEMBER_TEMPLATE, generated, rewrite
from guard.kinds import KINDS


def test_the_templates_are_what_make_iam_writes() -> None:
    for path, text in generated().items():
        assert path.read_text() == text, (
            f"{path.name}: its IAM block differs from the kind registry; run `make iam`"
        )


def test_a_registry_change_is_a_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind that needs one more permission: both templates must change."""
    notebook = KINDS["notebook"]
    more = replace(notebook, read_permissions=(*notebook.read_permissions, "sagemaker:ListTags2"))
    monkeypatch.setitem(KINDS, "notebook", more)
    for path, text in generated().items():
        assert path.read_text() != text
        assert "- sagemaker:ListTags2\n" in text, path.name


def test_a_new_action_is_granted_only_under_the_templates_condition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    notebook = KINDS["notebook"]
    delete = replace(
        notebook.actions["stop"], name="delete", operation="delete_notebook_instance",
        permission="sagemaker:DeleteNotebookInstance",
    )  # fmt: skip
    with_delete = replace(notebook, actions={**notebook.actions, "delete": delete})
    monkeypatch.setitem(KINDS, "notebook", with_delete)
    texts = generated()
    for path, condition in ((LAMBDA_TEMPLATE, "Enforce"), (MEMBER_TEMPLATE, "AllowActions")):
        text = texts[path]
        act = text.index(f"- {condition}\n")
        assert text.index("- Sid: DeleteNotebook\n") > act
        assert "Action: sagemaker:DeleteNotebookInstance\n" in text
        assert "Resource: arn:aws:sagemaker:*:*:notebook-instance/*\n" in text


def test_check_fails_on_a_drifted_template_and_make_iam_fixes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lambda_copy, member_copy = tmp_path / "template.yaml", tmp_path / "member.yaml"
    shutil.copy(LAMBDA_TEMPLATE, lambda_copy)
    shutil.copy(MEMBER_TEMPLATE, member_copy)
    monkeypatch.setattr(iam_templates, "LAMBDA_TEMPLATE", lambda_copy)
    monkeypatch.setattr(iam_templates, "MEMBER_TEMPLATE", member_copy)
    monkeypatch.setattr(iam_templates, "ROOT", tmp_path)
    assert iam_templates.main(["--check"]) == 0

    edited = member_copy.read_text().replace("- sagemaker:ListApps\n", "", 1)
    member_copy.write_text(edited)
    assert iam_templates.main(["--check"]) == 1
    assert "member.yaml: IAM differs from the registry; run `make iam`" in capsys.readouterr().err
    assert member_copy.read_text() == edited  # --check writes nothing

    assert iam_templates.main([]) == 0
    assert member_copy.read_text() == MEMBER_TEMPLATE.read_text()
    assert iam_templates.main(["--check"]) == 0


def test_the_generated_iam_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = generated()
    monkeypatch.setenv("COST_GUARD_KINDS", '["notebook"]')
    monkeypatch.setenv("COST_GUARD_PRICING__SOURCE", "bundled")
    assert generated() == before


def test_rewrite_keeps_everything_outside_the_markers() -> None:
    text = f"a: 1\n  {BEGIN}\n  old: 2\n  {END}\nb: 3\n"
    assert rewrite(text, ["new: 4", "  deeper: 5"]) == (
        f"a: 1\n  {BEGIN}\n  new: 4\n    deeper: 5\n  {END}\nb: 3\n"
    )


@pytest.mark.parametrize(
    "text", ["no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"]
)
def test_rewrite_refuses_a_template_without_one_marked_block(text: str) -> None:
    with pytest.raises(ValueError, match="expected one"):
        rewrite(text, ["x: 1"])
