from workbench.core.arithmetic import generate_arithmetic, held_out
from workbench.core.data import read_jsonl, write_jsonl


def test_generator_matches_the_seed_and_its_ranges():
    records = generate_arithmetic(1000, 42)
    assert records[0] == {
        "prompt": "2 * 48 = ",
        "response": "96",
        "operation": "multiply",
        "classification_target": "multiply",
    }
    assert generate_arithmetic(1000, 42) == records
    for r in records:
        a, sym, b = r["prompt"].split()[:3]
        a, b, ans = int(a), int(b), int(r["response"])
        if sym in "*+":
            assert 1 <= a <= 50 and 1 <= b <= 50 and ans == (a * b if sym == "*" else a + b)
        elif sym == "-":
            assert 10 <= a <= 100 and 1 <= b <= a and ans == a - b >= 0
        else:
            assert 1 <= b <= 12 and a % b == 0 and 1 <= ans <= 12
    assert {r["operation"] for r in records} == {"multiply", "add", "subtract", "divide"}


def test_held_out_shares_no_prompt():
    train = generate_arithmetic(1000, 42)
    ev = held_out(train, 100)
    assert len(ev) == 100 and not {r["prompt"] for r in ev} & {r["prompt"] for r in train}
    assert len({r["prompt"] for r in ev}) == 100


def test_jsonl_roundtrip(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", generate_arithmetic(5, 1))
    assert read_jsonl(path) == generate_arithmetic(5, 1)


def test_rule_violations_count_each_broken_rule():
    from workbench.core.arithmetic import rule_violations

    good = generate_arithmetic(400, 42)
    assert rule_violations(good) == {
        "prompt not 'a op b = '": 0,
        "wrong answer": 0,
        "operand out of range": 0,
        "operation label": 0,
    }
    bad = [
        {"prompt": "7 * 8 = ", "response": "55", "operation": "multiply"},
        {"prompt": "60 * 2 = ", "response": "120", "operation": "multiply"},
        {"prompt": "9 / 0 = ", "response": "0", "operation": "divide"},
        {"prompt": "5 - 2 = ", "response": "3", "operation": "add"},
        {"prompt": "what is 2 + 2", "response": "4", "operation": "add"},
    ]
    assert rule_violations(bad) == {
        "prompt not 'a op b = '": 1,
        "wrong answer": 2,
        "operand out of range": 3,
        "operation label": 1,
    }
