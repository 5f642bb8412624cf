"""The numbers of the README's outliers section, read from the result files in ``bench/results/outliers/``.

Each table is regenerated here from the JSON that ``neuronmap outliers evaluate|refine|synthesize`` wrote (the
commands are in the section's "Reproduce" block), and the README must contain it exactly; the numbers quoted
in the prose, and the claims they support, are checked the same way. No model runs here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "outliers"
START, END = "## Outliers: virtual outlier synthesis", "## Reliability"


@pytest.fixture(scope="module")
def section() -> str:
    text = (ROOT / "README.md").read_text()
    assert START in text and END in text, "the README's outliers section has moved"
    return text[text.index(START) : text.index(END)].replace("**", "")  # bold is emphasis, not data


@pytest.fixture(scope="module")
def prose(section: str) -> str:
    return " ".join(section.split())  # line breaks fall anywhere in a paragraph


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _cell(stat: dict) -> str:
    return f"{_pct(stat['mean'])} ± {_pct(stat['std'])}"


def _metric(result: dict, variant: str, ood_set: str, score: str, metric: str) -> str:
    """The mean of one OOD metric, in percent as the README writes it."""
    return _pct(result["aggregate"][variant]["ood"][ood_set][score][metric]["mean"])


def _eval_row(result: dict, variant: str, name: str) -> str:
    agg = result["aggregate"][variant]
    cells = [_cell(agg["accuracy"])]
    for ood_set in ("near", "far"):
        for score in ("energy", "msp"):
            if ood_set in agg["ood"]:
                stats = agg["ood"][ood_set][score]
                cells += [_cell(stats["auroc"]), _cell(stats["fpr95"])]
    return f"| {name} | " + " | ".join(cells) + " |"


def _lines(section: str) -> set[str]:
    return {line.strip() for line in section.splitlines()}


def _has_row(section: str, row: str) -> None:
    assert row in _lines(section), f"the README's table lacks the measured row\n{row}"


@pytest.fixture(scope="module")
def wiki() -> dict:
    return _result("eval-wiki.json")


@pytest.fixture(scope="module")
def sentiment() -> dict:
    return _result("eval-sentiment.json")


def test_topic_table_matches_its_result_file(section: str, prose: str, wiki: dict) -> None:
    _has_row(section, _eval_row(wiki, "baseline", "without VOS"))
    _has_row(section, _eval_row(wiki, "vos", "VOS"))
    sizes = wiki["sizes"]
    assert f"{len(wiki['seeds'])} seeds, in percent" in prose
    assert (
        f"({len(wiki['classes'])} classes; {sizes['train']:,} train, {sizes['test']:,} test; "
        f"near OOD: {sizes['holdout']:,} History and Technology articles; far OOD: {sizes['far']:,} reviews"
    ) in prose
    train = wiki["train"]
    assert (
        f"`--hidden {train['hidden']} --epochs {train['epochs']}`; VOS `--queue {train['queue']} "
        f"--sample-from {train['sample_from']} --select {train['select']} --loss-weight {train['loss_weight']} "
        f"--start-epoch {train['start_epoch']}`"
    ) in prose


def test_sentiment_table_matches_its_result_file(section: str, prose: str, sentiment: dict) -> None:
    _has_row(section, _eval_row(sentiment, "baseline", "without VOS"))
    _has_row(section, _eval_row(sentiment, "vos", "VOS"))
    sizes = sentiment["sizes"]
    assert (
        f"({sizes['train']:,} train, {sizes['test']:,} test; far OOD: {sizes['far']:,} Wikipedia paragraphs"
    ) in prose


@pytest.fixture(scope="module")
def strong() -> dict:
    return _result("eval-wiki-strong-vos.json")


def test_stronger_vos_table_matches_its_result_file(
    section: str, prose: str, wiki: dict, strong: dict
) -> None:
    _has_row(section, _eval_row(strong, "baseline", "without VOS"))
    _has_row(section, _eval_row(strong, "vos", "stronger VOS"))
    assert strong["aggregate"]["baseline"] == wiki["aggregate"]["baseline"]  # VOS options leave it alone
    assert strong["seeds"] == wiki["seeds"]
    train = strong["train"]
    assert (
        f"(`--loss-weight {train['loss_weight']} --select {train['select']} --sample-from {train['sample_from']}`"
    ) in prose
    assert train["loss_weight"] == 10 * wiki["train"]["loss_weight"] and "ten times the weight" in prose
    paper = wiki["train"]["select"] / wiki["train"]["sample_from"]
    assert (
        f"the lowest {train['select'] / train['sample_from']:.0%} instead of the lowest {paper:.2%})" in prose
    )


def _differences_past_one_std(result: dict) -> dict[tuple[str, str, str], float]:
    """VOS minus baseline for each OOD mean that differs by more than the larger of the two stds."""
    base, vos = result["aggregate"]["baseline"]["ood"], result["aggregate"]["vos"]["ood"]
    out = {}
    for ood_set, scores in base.items():
        for score, metrics in scores.items():
            for metric, b in metrics.items():
                v = vos[ood_set][score][metric]
                if abs(v["mean"] - b["mean"]) > max(b["std"], v["std"]):
                    out[ood_set, score, metric] = v["mean"] - b["mean"]
    return out


def test_what_the_evaluation_shows(prose: str, wiki: dict, sentiment: dict, strong: dict) -> None:
    """The claims under "What this shows", each against the numbers it rests on."""

    def m(result: dict, variant: str, ood_set: str, score: str, metric: str) -> str:
        return _metric(result, variant, ood_set, score, metric)

    # VOS at the paper's settings: all but one difference within one std, and that one against VOS.
    past = _differences_past_one_std(wiki)
    assert list(past) == [("far", "energy", "auroc")] and past["far", "energy", "auroc"] < 0
    assert (
        f"(near-OOD energy AUROC {m(wiki, 'vos', 'near', 'energy', 'auroc')} vs "
        f"{m(wiki, 'baseline', 'near', 'energy', 'auroc')}; FPR95 {m(wiki, 'vos', 'near', 'energy', 'fpr95')} vs "
        f"{m(wiki, 'baseline', 'near', 'energy', 'fpr95')}); the one past it goes against VOS (far-OOD energy "
        f"AUROC {m(wiki, 'vos', 'far', 'energy', 'auroc')} vs {m(wiki, 'baseline', 'far', 'energy', 'auroc')})"
    ) in prose
    assert (
        f"(AUROC {m(sentiment, 'vos', 'far', 'energy', 'auroc')} vs "
        f"{m(sentiment, 'baseline', 'far', 'energy', 'auroc')})"
    ) in prose
    # The stronger VOS: better MSP and far-OOD energy AUROC, much worse near-OOD energy.
    assert (
        f"(near FPR95 {m(strong, 'vos', 'near', 'msp', 'fpr95')} vs {m(strong, 'baseline', 'near', 'msp', 'fpr95')}; "
        f"far AUROC {m(strong, 'vos', 'far', 'msp', 'auroc')} vs {m(strong, 'baseline', 'far', 'msp', 'auroc')}) "
        f"and far-OOD energy AUROC ({m(strong, 'vos', 'far', 'energy', 'auroc')} vs "
        f"{m(strong, 'baseline', 'far', 'energy', 'auroc')}), but ruins the near-OOD energy score (FPR95 "
        f"{m(strong, 'vos', 'near', 'energy', 'fpr95')} vs {m(strong, 'baseline', 'near', 'energy', 'fpr95')})"
    ) in prose
    # "the best detector of held-out topics": no other score's near FPR95 comes within one std of plain energy.
    best = wiki["aggregate"]["baseline"]["ood"]["near"]["energy"]["fpr95"]
    for result in (wiki, strong):
        for variant in ("baseline", "vos"):
            for score in ("energy", "msp"):
                other = result["aggregate"][variant]["ood"]["near"][score]["fpr95"]
                assert other["mean"] >= best["mean"] - best["std"], (variant, score)
    assert "Accuracy is never hurt." in prose
    for result in (wiki, sentiment, strong):
        accuracy = {v: _pct(result["aggregate"][v]["accuracy"]["mean"]) for v in ("baseline", "vos")}
        assert float(accuracy["vos"]) >= float(accuracy["baseline"])
    # FPR95 noisier than AUROC.
    near = wiki["aggregate"]["baseline"]["ood"]["near"]["energy"]
    assert (
        f"Near-OOD FPR95 moves by ±{round(100 * near['fpr95']['std'])} points between seeds where AUROC moves by "
        f"±{_pct(near['auroc']['std'])}"
    ) in prose
    # "Far" is not far.
    assert (
        f"(AUROC about {round(100 * wiki['aggregate']['baseline']['ood']['far']['energy']['auroc']['mean'])} vs "
        f"{round(100 * near['auroc']['mean'])})"
    ) in prose
    assert "(AUROC below 50)" in prose
    for variant in ("baseline", "vos"):
        for score in ("energy", "msp"):
            assert sentiment["aggregate"][variant]["ood"]["far"][score]["auroc"]["mean"] < 0.5
    # Energy vs MSP.
    assert (
        f"Energy beats MSP on near OOD ({m(wiki, 'baseline', 'near', 'energy', 'auroc')} vs "
        f"{m(wiki, 'baseline', 'near', 'msp', 'auroc')} AUROC, {m(wiki, 'baseline', 'near', 'energy', 'fpr95')} vs "
        f"{m(wiki, 'baseline', 'near', 'msp', 'fpr95')} FPR95)"
    ) in prose
    assert (
        f"MSP has the higher AUROC ({m(wiki, 'baseline', 'far', 'msp', 'auroc')} vs "
        f"{m(wiki, 'baseline', 'far', 'energy', 'auroc')}), energy the lower FPR95 "
        f"({m(wiki, 'baseline', 'far', 'energy', 'fpr95')} vs {m(wiki, 'baseline', 'far', 'msp', 'fpr95')})"
    ) in prose


def test_refinement_table_matches_its_result_file(section: str, prose: str) -> None:
    result = _result("refine-wiki.json")
    agg, runs, config = result["aggregate"], result["runs"], result["refine"]
    initial = agg["initial"]
    _has_row(
        section,
        f"| initial | {config['initial']} | {_cell(initial['accuracy'])} | {_cell(initial['hard_accuracy'])} |",
    )
    first = runs[str(result["seeds"][0])]
    for strategy in config["strategies"]:
        labelled = [r["labelled"] for r in first[strategy]]
        assert len(labelled) == config["rounds"]
        assert [[r["labelled"] for r in s[strategy]] for s in runs.values()] == [labelled] * len(runs)
        cells = [" / ".join(str(n) for n in labelled)]
        cells += [" / ".join(_cell(r[m]) for r in agg[strategy]) for m in ("accuracy", "hard_accuracy")]
        _has_row(section, f"| {strategy} | " + " | ".join(cells) + " |")
    sizes, hard = result["sizes"], {s["hard_size"] for s in runs.values()}
    assert len(hard) == 1
    assert (
        f"`--limit {result['data']['limit']}` (11 classes, {sizes['train']:,} training / {sizes['test']:,} test "
        f"texts; hard set {hard.pop()}), {result['data']['encoder']}, {len(result['seeds'])} seeds"
    ) in prose
    last = {s: agg[s][-1] for s in ("random", "uncertainty", "boundary")}
    gain = last["uncertainty"]["accuracy"]["mean"] - last["random"]["accuracy"]["mean"]
    hard_gain = last["uncertainty"]["hard_accuracy"]["mean"] - last["random"]["hard_accuracy"]["mean"]
    labels = config["budget"] * config["rounds"]
    assert (
        f"(+{_pct(gain)} points overall and +{round(100 * hard_gain)} on the hard set after {labels} labels)"
        in prose
    )
    # "does not beat random picks": boundary is at most level with random after every round.
    for b, r in zip(agg["boundary"], agg["random"], strict=True):
        assert b["accuracy"]["mean"] <= r["accuracy"]["mean"] + r["accuracy"]["std"]
        assert b["hard_accuracy"]["mean"] <= r["hard_accuracy"]["mean"]


def test_synthesis_numbers_match_their_result_file(prose: str) -> None:
    result = _result("synthesis-mathematics.json")
    levels = {(row["mode"], row["level"]): row for row in result["levels"]}
    quantiles = [levels["quantile", q] for q in (0.5, 0.1, 0.01, 0.001)]
    boundary = levels["boundary", None]
    points = {row["points"] for row in result["levels"]}
    assert len(points) == 1 and f"(class {result['class']}, {points.pop()} points each)" in prose
    distances = " -> ".join(f"{row['mahalanobis']:.1f}" for row in quantiles)
    assert f"(mean Mahalanobis distance {distances} for q = 0.5, 0.1, 0.01, 0.001;" in prose
    assert (
        f"log-likelihood {quantiles[0]['log_likelihood']:.0f} -> {quantiles[-1]['log_likelihood']:.0f})"
        in prose
    )
    p = [row["p_class"] for row in quantiles]
    assert f"(p = {min(p):.2f}-{max(p):.2f})" in prose
    assert f"cross at a mean distance of {boundary['mahalanobis']:.1f}." in prose
    assert boundary["mahalanobis"] > max(row["mahalanobis"] for row in quantiles)
    assert (
        f"(mean {boundary['energy']:.1f} on it vs {quantiles[0]['energy']:.1f} for typical points)" in prose
    )
    assert boundary["energy"] <= quantiles[0]["energy"]  # "does not rise towards the boundary"


def test_reproduce_costs_match_the_result_files(prose: str) -> None:
    seconds = {name: _result(name)["seconds"] for name in ("eval-wiki.json", "eval-sentiment.json",
                                                           "eval-wiki-strong-vos.json", "refine-wiki.json")}  # fmt: skip
    assert f"cached afterwards: {seconds.pop('eval-wiki.json'):.0f} s in all" in prose
    assert "each later command then takes under a minute" in prose and max(seconds.values()) < 60


# Options added after the first result files were committed, with the value those files ran with.
_LATER_OPTIONS = {"train": {"logistic_sign": "positive"}, "refine": {"space": "feature"}}


def _same_options(variant: dict, reference: dict, option: str, value: object) -> None:
    """``variant`` ran the reference's command plus ``option``: same data, seeds and every other option."""
    assert variant["data"] == reference["data"] and variant["seeds"] == reference["seeds"]
    for key, later in _LATER_OPTIONS.items():
        if key in reference:
            mine, theirs = {**later, **variant[key]}, {**later, **reference[key]}
            if option in later:
                assert mine.pop(option) == value and theirs.pop(option) == later[option]
            assert mine == theirs, key


def test_free_sign_claims_match_their_result_files(prose: str, wiki: dict, sentiment: dict) -> None:
    """The free-sign bullet, from the ``--logistic-sign free`` runs (which record each seed's logistic weight)."""
    free = {
        "sentiment": _result("eval-sentiment-free-sign.json"),
        "topic": _result("eval-wiki-free-sign.json"),
    }
    positive = {"sentiment": sentiment, "topic": wiki}
    quoted = {"sentiment": "far", "topic": "near"}  # the OOD set quoted per classifier
    negative: dict[str, list[str]] = {}
    for name, result in free.items():
        _same_options(result, positive[name], "logistic_sign", "free")
        # the baseline does not use the logistic: the same numbers as the committed run
        assert result["aggregate"]["baseline"] == positive[name]["aggregate"]["baseline"]
        vos, base = result["runs"]["vos"], result["runs"]["baseline"]
        negative[name] = [s for s in vos if vos[s]["logistic_weight"] < 0]
        # "the odd ones out": every negative-weight seed moved further from its baseline than any positive one
        auroc = {s: (vos[s], base[s]) for s in vos}
        moved = {
            s: abs(v["ood"][quoted[name]]["energy"]["auroc"] - b["ood"][quoted[name]]["energy"]["auroc"])
            for s, (v, b) in auroc.items()
        }
        assert negative[name] and min(moved[s] for s in negative[name]) > max(
            moved[s] for s in vos if s not in negative[name]
        )

    def per_seed(name: str, variant: str, ood_set: str, seeds: list[str]) -> list[str]:
        runs = free[name]["runs"][variant]
        return [_pct(runs[s]["ood"][ood_set]["energy"]["auroc"]) for s in seeds]

    seeds = [str(s) for s in free["sentiment"]["seeds"]]
    senti = per_seed("sentiment", "vos", "far", seeds)
    stat = free["sentiment"]["aggregate"]["vos"]["ood"]["far"]["energy"]["auroc"]
    assert (
        f"sentiment far-OOD energy AUROC {', '.join(senti[:-1])} and {senti[-1]} "
        f"(mean {_cell(stat)}) and topic near-OOD {', '.join(per_seed('topic', 'vos', 'near', seeds))}."
    ) in prose

    def seed_words(ids: list[str]) -> str:
        return f"seed {ids[0]}" if len(ids) == 1 else f"seeds {', '.join(ids[:-1])} and {ids[-1]}"

    assert (
        f"(s{seed_words(negative['sentiment'])[1:]} on sentiment, {seed_words(negative['topic'])} on topics)"
        in prose
    )
    # the topic classifier's negative seed: lower near- and far-OOD AUROC than without VOS
    (t,) = negative["topic"]
    near = per_seed("topic", "vos", "near", [t]) + per_seed("topic", "baseline", "near", [t])
    far = per_seed("topic", "vos", "far", [t]) + per_seed("topic", "baseline", "far", [t])
    assert f"(near-OOD {near[0]} vs {near[1]} without VOS, far-OOD {far[0]} vs {far[1]})" in prose
    assert float(near[0]) < float(near[1]) and float(far[0]) < float(far[1])
    # the sentiment classifier's negative seeds: its only per-seed far-OOD AUROCs above 50
    neg = negative["sentiment"]
    vos_neg = per_seed("sentiment", "vos", "far", neg)
    base_neg = per_seed("sentiment", "baseline", "far", neg)
    assert f"({' and '.join(vos_neg)} vs {' and '.join(base_neg)} without VOS)" in prose
    above = [
        (label, variant, s, score)
        for label, result in (("free", free["sentiment"]), ("positive", sentiment))
        for variant, runs in result["runs"].items()
        for s, run in runs.items()
        for score, metrics in run["ood"]["far"].items()
        if metrics["auroc"] > 0.5
    ]
    assert sorted(above) == sorted(("free", "vos", s, "energy") for s in neg)
    assert sentiment["aggregate"]["baseline"]["ood"]["far"]["energy"]["auroc"]["mean"] < 0.5
    # the positive weight: a steady sentiment far-OOD result, lower than without VOS on every seed
    steady = sentiment["aggregate"]["vos"]["ood"]["far"]["energy"]["auroc"]
    assert f"(sentiment far-OOD std {_pct(steady['std'])} instead of {_pct(stat['std'])})" in prose
    assert steady["std"] < stat["std"]
    assert (
        f"lowers sentiment far-OOD energy AUROC on every seed (mean {_metric(sentiment, 'vos', 'far', 'energy', 'auroc')} "
        f"vs {_metric(sentiment, 'baseline', 'far', 'energy', 'auroc')})"
    ) in prose
    for s, run in sentiment["runs"]["vos"].items():
        base = sentiment["runs"]["baseline"][s]["ood"]["far"]["energy"]["auroc"]
        assert run["ood"]["far"]["energy"]["auroc"] < base, s
    assert "(`--logistic-sign free`)" in prose


def test_refine_spaces_match_their_result_files(prose: str) -> None:
    """Nearest in logit or whitened space: the same result as random, from ``--space logit|whitened``."""
    feature = _result("refine-wiki.json")
    spaces = {space: _result(f"refine-wiki-{space}.json") for space in ("logit", "whitened")}
    last = {}
    for space, result in spaces.items():
        _same_options(result, feature, "space", space)
        # the space moves only the boundary strategy's picks: everything else is the committed run's
        for s, runs in result["runs"].items():
            assert {k: v for k, v in runs.items() if k != "boundary"} == {
                k: v for k, v in feature["runs"][s].items() if k != "boundary"
            }
        agg = result["aggregate"]
        last[space] = agg["boundary"][-1]
        random = agg["random"][-1]
        for metric in ("accuracy", "hard_accuracy"):  # "the same result as random, within one std"
            b, r = last[space][metric], random[metric]
            assert abs(b["mean"] - r["mean"]) <= max(b["std"], r["std"]), (space, metric)
    random = feature["aggregate"]["random"][-1]
    assert feature["refine"]["rounds"] == 3 and "after three rounds" in prose

    def pair(stats: dict) -> str:
        return f"{_cell(stats['accuracy'])} / {_cell(stats['hard_accuracy'])}"

    assert (
        f"(`--space logit`, `--space whitened`) gave the same result as random, within one standard deviation "
        f"(accuracy / hard accuracy after three rounds: {pair(last['logit'])} and {pair(last['whitened'])}, "
        f"random {pair(random)})"
    ) in prose


def test_variant_commands_are_in_the_reproduce_block(section: str, prose: str) -> None:
    block = section[section.index("Reproduce (") :]
    commands = " ".join(block[block.index("```") : block.index("```", block.index("```") + 3)].split())
    for option, out in (
        ("--logistic-sign free", "eval-wiki-free-sign"),
        ("--logistic-sign free", "eval-sentiment-free-sign"),
        ("--space logit", "refine-wiki-logit"),
        ("--space whitened", "refine-wiki-whitened"),
    ):
        assert f"{option} --out runs/{out}" in commands
        assert f"`{out}.json`" in prose
    seconds = [_result(f"{name}.json")["seconds"] for name in ("eval-wiki-free-sign", "eval-sentiment-free-sign",
                                                                 "refine-wiki-logit", "refine-wiki-whitened")]  # fmt: skip
    assert "the four variants at the end each took under two minutes" in prose and max(seconds) < 120
