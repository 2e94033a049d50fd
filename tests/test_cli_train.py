"""`workbench data generate` and `workbench train sft`: flags, YAML + overrides, and one-line errors."""

import json

import pytest
from helpers import assert_one_line_error, cli

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, generate_arithmetic(24, 42))
    write_jsonl(tmp_path / "eval.jsonl", generate_arithmetic(8, 5))
    return path


def test_data_generate(tmp_path, capsys):
    out = tmp_path / "d" / "train.jsonl"
    code, stdout, err = cli(
        capsys,
        "data",
        "generate",
        "--output",
        str(out),
        "--samples",
        "20",
        "--seed",
        "42",
        "--held-out",
        str(tmp_path / "d" / "eval.jsonl"),
        "--held-out-samples",
        "5",
    )
    assert code == 0, err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 20 and rows[0]["prompt"] == "2 * 48 = "
    assert len((tmp_path / "d" / "eval.jsonl").read_text().splitlines()) == 5


def test_config_with_overrides_trains(tiny_dir, data_file, tmp_path, capsys):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text(
        "model: nobody/absent\nmax_steps: 50\nbatch_size: 2\nlearning_rate: 0.01\n"
        "intermediate_loss:\n  enabled: true\n  layer: 1\n  weight: 0.4\n"
    )
    out = tmp_path / "run"
    code, stdout, err = cli(
        capsys,
        "train",
        "sft",
        "--config",
        str(cfgfile),
        "--model",
        str(tiny_dir),
        "--data",
        str(data_file),
        "--eval-data",
        str(tmp_path / "eval.jsonl"),
        "--output",
        str(out),
        "--max-steps",
        "3",
        "--intermediate-weight",
        "0.7",
        "--lora-targets",
        "q_proj,k_proj",
        "--no-progress",
    )
    assert code == 0, err
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["model"] == str(tiny_dir) and resolved["total_steps"] == 3 and resolved["batch_size"] == 2
    assert resolved["intermediate_loss"] == {
        **resolved["intermediate_loss"],
        "layer": 1,
        "weight": 0.7,
        "enabled": True,
    }
    assert resolved["lora_targets"] == "q_proj,k_proj"
    assert json.loads((out / "adapter_config.json").read_text())["target_modules"] in (
        ["q_proj", "k_proj"],
        ["k_proj", "q_proj"],
    )
    assert len((out / "train_log.jsonl").read_text().splitlines()) == 3
    assert "correct-operation lens probability at layer 1" in stdout


def _bad(tmp_path, data_file, tiny_dir, **changes):
    args = {"--model": str(tiny_dir), "--data": str(data_file), "--output": str(tmp_path / "run"), "--max-steps": "1"}
    args.update(changes)
    flat = [x for k, v in args.items() if v is not None for x in ((k, v) if v != "" else (k,))]
    return ["train", "sft", *flat, "--no-progress"]


@pytest.mark.parametrize(
    "change,needles",
    [
        ({"--data": "/nonexistent/train.jsonl"}, ("'/nonexistent/train.jsonl' does not exist",)),
        ({"--freeze-layers": "0-7"}, ("freeze-layers", "out of range")),
        ({"--lora-targets": "v_proj,query"}, ("query", "valid:", "o_proj", "v_proj")),
        ({"--adapter": "/nonexistent/adapter"}, ("adapter_config.json",)),
        ({"--intermediate-layer": "99"}, ("out of range",)),
        ({"--intermediate-layer": "mid"}, ("not a layer number",)),
        ({"--model": "no-such-model"}, ("unknown model",)),
    ],
)
def test_train_bad_input(tiny_dir, data_file, tmp_path, capsys, change, needles):
    code, _, err = cli(capsys, *_bad(tmp_path, data_file, tiny_dir, **change))
    assert_one_line_error(code, err, *needles)
    assert not (tmp_path / "run" / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    "line,needle",
    [
        ("{not json", "train.jsonl:5: broken JSON"),
        ('{"prompt": "1 + 1 = "}', "train.jsonl:5: field 'response'"),
    ],
)
def test_broken_jsonl_line_named(tiny_dir, data_file, tmp_path, capsys, line, needle):
    lines = data_file.read_text().splitlines()
    lines[4] = line
    data_file.write_text("\n".join(lines) + "\n")
    code, _, err = cli(capsys, *_bad(tmp_path, data_file, tiny_dir))
    assert_one_line_error(code, err, needle)


def test_corrupt_adapter_is_one_line(tiny_dir, data_file, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4, "target_modules": ["v_proj"]}')
    (adapter / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    code, _, err = cli(capsys, *_bad(tmp_path, data_file, tiny_dir, **{"--adapter": str(adapter)}))
    assert_one_line_error(code, err, "cannot load adapter")


def test_unknown_yaml_key_names_file_and_nearest(tiny_dir, tmp_path, capsys):
    cfgfile = tmp_path / "c.yaml"
    cfgfile.write_text("lora_rnk: 8\n")
    code, _, err = cli(capsys, "train", "sft", "--config", str(cfgfile))
    assert_one_line_error(code, err, str(cfgfile), "lora_rnk", "lora_rank")


@pytest.mark.slow  # trains 10 steps, then three introspect runs
def test_introspect_commands_take_the_trained_adapter(tiny_dir, data_file, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = cli(
        capsys,
        *_bad(
            tmp_path,
            data_file,
            tiny_dir,
            **{
                "--max-steps": "10",
                "--batch-size": "4",
                "--learning-rate": "0.01",
                "--intermediate-layer": "2",
                "--intermediate-weight": "1.0",
                "--eval-data": str(tmp_path / "eval.jsonl"),
            },
        ),
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    eval_prompts = [json.loads(x)["prompt"] for x in (tmp_path / "eval.jsonl").read_text().splitlines()]
    probs = {}
    for name, extra in (("base", []), ("trained", ["--adapter", str(out)])):
        code, _, err = cli(
            capsys,
            "introspect",
            "logit-lens",
            "-m",
            str(tiny_dir),
            "--prompts",
            "|".join(eval_prompts),
            "--targets",
            "multiply",
            "--targets",
            "add",
            "--targets",
            "subtract",
            "--targets",
            "divide",
            *extra,
            "--output",
            str(tmp_path / f"{name}.json"),
        )
        assert code == 0, err
        doc = json.loads((tmp_path / f"{name}.json").read_text())
        probs[name] = doc["mean_expected_prob"]
        assert doc["adapter"] == (str(out) if extra else None)
    assert probs["base"] == pytest.approx(metrics["before"]["lens"]["mean_correct_target_prob"], rel=1e-5)
    assert probs["trained"] == pytest.approx(metrics["after"]["lens"]["mean_correct_target_prob"], rel=1e-5)
    assert probs["trained"] > probs["base"]
    code, _, err = cli(
        capsys,
        "introspect",
        "classifier",
        "-m",
        str(tiny_dir),
        "--classes",
        "a:1 + 2 = |3 + 4 = ",
        "--classes",
        "m:1 * 2 = |3 * 4 = ",
        "--adapter",
        str(out),
        "--output",
        str(tmp_path / "c.json"),
    )
    assert code == 0, err
    assert json.loads((tmp_path / "c.json").read_text())["adapter"] == str(out)
