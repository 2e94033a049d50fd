import pytest

from workbench.core.arithmetic import guide_classes, infer_operation
from workbench.core.errors import WorkbenchError
from workbench.core.guide import CLASSES
from workbench.core.layers import parse_layers
from workbench.core.tasks import parse_class_spec, parse_classes, parse_prompt_list


def test_class_spec_keeps_trailing_spaces_and_colons_in_prompts():
    assert parse_class_spec("multiply:7 * 8 = |12 * 5 = ") == ("multiply", ["7 * 8 = ", "12 * 5 = "])
    assert parse_class_spec("time:at 10:30 | at 11:45") == ("time", ["at 10:30 ", " at 11:45"])


def test_parse_classes_seed():
    data = parse_classes([f"{k}:{'|'.join(v)}" for k, v in CLASSES.items()])
    assert data.classes == list(CLASSES) and len(data.prompts) == 16
    assert data.by_class() == guide_classes().by_class()


def test_prompt_list_from_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("7 * 8 = \n\n12 + 5 = \r\n", encoding="utf-8")
    assert parse_prompt_list(f"@{f}") == ["7 * 8 = ", "12 + 5 = "]
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(WorkbenchError, match="no prompts"):
        parse_prompt_list(f"@{tmp_path / 'empty.txt'}")


def test_classes_accept_file_lists(tmp_path):
    f = tmp_path / "mul.txt"
    f.write_text("7 * 8 = \n3 * 9 = \n")
    data = parse_classes([f"multiply:@{f}", "add:1 + 2 = |3 + 4 = "])
    assert data.by_class()["multiply"] == ["7 * 8 = ", "3 * 9 = "]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("all", list(range(6))),
        (None, list(range(6))),
        ("3,5", [3, 5]),
        ("2-4", [2, 3, 4]),
        ("0-1,5", [0, 1, 5]),
    ],
)
def test_parse_layers(text, expected):
    assert parse_layers(text, 6) == expected


@pytest.mark.parametrize(
    "prompt,op",
    [
        ("7 * 8 = ", "multiply"),
        ("23 + 45 = ", "add"),
        ("50 - 23 = ", "subtract"),
        ("48 / 6 = ", "divide"),
        ("Calculate: 3 * 4 = ", "multiply"),
        ("hello", None),
    ],
)
def test_infer_operation(prompt, op):
    assert infer_operation(prompt) == op
