"""The generation commands as a user runs them: a real ``python -m revtune.cli`` process each time."""
import json
import os
import subprocess
import sys

import pytest

PAIRS = [("He go home.", "He goes home.", "fluency"), ("She are here.", "She is here.", "fluency"),
         ("It rain a lot.", "It rains a lot.", "fluency"), ("The thing is big.", "The house is big.", "clarity"),
         ("Do the stuff.", "Do the dishes.", "clarity"), ("We has two cats.", "We have two cats.", "fluency"),
         ("That was a thing.", "That was a storm.", "clarity"), ("They was late.", "They were late.", "fluency")]
TEST = [p for p in PAIRS if p[2] == "fluency"][:3]  # one intent, so `revise --intent fluency` redoes them
TINY = ["--model", "tiny", "--tiny-layers", "4", "--max-steps", "4", "--batch-size", "4", "--max-length", "160",
        "--lora-r", "4", "--dev-generate", "0", "--new-tokens-factor", "0.5", "--new-tokens-floor", "4"]


def revtune(*args, stdin=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "revtune.cli", *map(str, args)], input=stdin, env=env,
                          capture_output=True, text=True, timeout=300)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    files = {name: jsonl(folder / f"{name}.jsonl", [{"before_sent": b, "after_sent": a, "labels": i}
                                                     for b, a, i in pairs])
             for name, pairs in (("train", PAIRS), ("dev", PAIRS[:3]), ("test", TEST))}
    done = revtune("intention-tune", "--train", files["train"], "--dev", files["dev"], "--test", files["test"],
                   "--out", folder / "it", *TINY)
    assert done.returncode == 0, done.stderr
    return folder


def assert_user_error(done, *fragments):
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("revtune "), done.stderr
    for fragment in fragments:
        assert fragment in message[0]


def test_intention_tune_then_revise_a_file_reproduces_the_scored_predictions(run):
    metrics = json.loads((run / "it" / "metrics.json").read_text())
    assert metrics["alignment"]["s_int"] == metrics["generator_layers"] and metrics["alignment"]["ratio"] is None
    texts = jsonl(run / "texts.jsonl", [{"text": b} for b, _, _ in TEST])
    done = revtune("revise", "--run", run / "it", "--input", texts, "--intent", "fluency", "--out",
                   run / "revised.jsonl")
    assert done.returncode == 0, done.stderr
    revised = read_jsonl(run / "revised.jsonl")
    predictions = read_jsonl(run / "it" / "generator" / "predictions.jsonl")
    assert [r["text"] for r in revised] == [p["prediction"] for p in predictions]
    assert revised[0]["source"] == TEST[0][0] and revised[0]["intents"] == ["fluency"]


def test_revise_reads_stdin_lines_and_several_intents(run):
    done = revtune("revise", "--run", run / "it", "--intent", "Fluency, clarity",
                   stdin="Their is a error in this sentense.\nHe go home.\n")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2


def test_score_prints_every_metric_as_json(run):
    src = jsonl(run / "src.jsonl", [{"text": b} for b, _, _ in TEST])
    pred = jsonl(run / "pred.jsonl", [{"text": a} for _, a, _ in TEST])
    ref = jsonl(run / "ref.jsonl", [{"references": [a]} for _, a, _ in TEST])
    done = revtune("score", "--src", src, "--pred", pred, "--ref", ref, "--json", "--per-item")
    assert done.returncode == 0, done.stderr
    scores = json.loads(done.stdout)
    assert scores["exact_match"] == 1.0 and scores["copy_rate"] == 0.0 and len(scores["items"]) == 3
    assert {"sari", "gleu", "update_r", "rouge1", "rouge2"} <= set(scores)


def test_an_unknown_intent_is_refused_with_the_known_ones_and_nothing_written(run):
    done = revtune("revise", "--run", run / "it", "--intent", "clarity,politeness", "--out", run / "no.jsonl",
                   stdin="He go home.\n")
    assert_user_error(done, "politeness", "clarity, fluency")
    assert not (run / "no.jsonl").exists()


def test_a_run_of_the_wrong_task_is_refused(run):
    done = revtune("revise", "--run", run / "it" / "predictor", "--intent", "clarity", stdin="He go home.\n")
    assert_user_error(done, "task 'intent', not 'revise'")


def test_an_empty_source_text_is_refused_with_its_line(run):
    done = revtune("revise", "--run", run / "it", "--intent", "clarity", stdin="He go home.\n   \nOk.\n")
    assert_user_error(done, "<stdin>:2", "empty source text")


def test_references_of_another_length_are_refused(run):
    src = jsonl(run / "src2.jsonl", [{"text": "a b"}, {"text": "c d"}])
    pred = jsonl(run / "pred2.jsonl", [{"text": "a"}, {"text": "c"}])
    ref = jsonl(run / "ref2.jsonl", [{"text": "a"}])
    done = revtune("score", "--src", src, "--pred", pred, "--ref", ref)
    assert_user_error(done, "ref2.jsonl", "aligned by line")


def test_intention_tune_writes_a_report_of_both_steps(run):
    text = (run / "it" / "report.html").read_text()
    assert "<title>revtune intention-tune report: it</title>" in text and 'id="selection-heatmap"' in text
    assert "Sample of revisions (generator)" in text and "Confusion matrix (predictor, test)" in text
    assert "<ins>" in text or "<del>" in text  # the word diff of prediction or reference against the source
    generator = (run / "it" / "generator" / "report.html").read_text()
    assert "Sample of revisions" in generator and "<script" not in generator


def test_revise_and_load_run_agree_on_an_intention_tune_output(run):
    import revtune

    it = revtune.load_run(run / "it")
    assert it.tasks == ["intent", "revise"]
    texts = [b for b, _, _ in TEST]
    predictions = read_jsonl(run / "it" / "generator" / "predictions.jsonl")
    assert it.revise(texts, intent="fluency") == [p["prediction"] for p in predictions]
    assert len(it.predict([(b, a) for b, a, _ in TEST])) == 3
