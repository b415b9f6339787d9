"""The tables and plot `evaluate-linkner` writes."""

from pathlib import Path

PLOT_HINT = "pip install spacy-ember[plot]"  # what the plot needs: matplotlib


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def results_table(name: str, results: dict, best: dict, dev: dict, run: dict) -> str:
    """Markdown: per method the test scores at its dev-chosen setting, the best method,
    LLM vs probe accuracy on routed entities (seen / unseen names), the prompts compared
    on dev, and what the LLM calls cost."""
    lines = [
        f"LinkNER on {name} test (setting chosen on dev, at most {run['max_routed']:.0%} "
        f"routed); LLM {run['llm']}, {run['demonstrations']} retrieved demonstrations",
        "",
        "| method | threshold | setting | probe F1 | routed | LLM acc. | probe acc. | replace F1 "
        "| fuse F1 | final F1 | oracle F1 | ECE | dev probe F1 | dev final F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        lines.append(
            f"| {m} | {r['threshold']:.4f} | {_setting(r['setting'])} | {_pct(r['probe_f'])} "
            f"| {_pct(r['routed_fraction'])}% | {_pct(r['routed_llm_accuracy'])} "
            f"| {_pct(r['routed_probe_accuracy'])} | {_pct(r['replace_f'])} "
            f"| {_pct(r['fuse_f'])} | {_pct(r['final_f'])} | {_pct(r['oracle_f'])} "
            f"| {r['ece']:.3f} | {_pct(r['dev_probe_f'])} | {_pct(r['dev_final_f'])} |"
        )
    if best:
        lines += [
            "",
            f"Best on dev: {best['method']} ({_setting(best['setting'])}): test F1 "
            f"{_pct(best['probe_f'])} -> {_pct(best['final_f'])} ({100 * best['gain']:+.2f}).",
        ]
    split = dev.get("routed_split", {})
    if split:
        lines += [
            "",
            "Dev entities sent to the LLM, by whether their name is a training entity:",
            "",
        ]
        lines += ["| names | n | LLM acc. | probe acc. |", "|---|---|---|---|"]
        for part, row in split.items():
            lines.append(f"| {part} | {row['n']} | {_pct(row['llm'])} | {_pct(row['probe'])} |")
    prompts = dev.get("prompts")
    if prompts:
        modes = [k for k in prompts["all"] if k != "n"]
        lines += [
            "",
            f"Prompts on {prompts['n']} routed dev entities (k = {prompts['k']}): accuracy",
            "",
            "| names | n | " + " | ".join(modes) + " |",
            "|---|---|" + "---|" * len(modes),
        ]
        for part in ("all", "seen", "unseen"):
            row = prompts[part]
            cells = " | ".join(_pct(row[m]) for m in modes)
            lines.append(f"| {part} | {row['n']} | {cells} |")
    lines += [
        "",
        f"LLM calls {run['llm_calls']} ({run['llm_requests']} requests, {run['cache_hits']} "
        f"from the cache, failures {run['failures'] or 'none'}), "
        f"{run['prompt_tokens_per_call']} prompt tokens per call, {run['seconds_per_call']} s "
        f"per call, LLM wall {run['llm_wall_seconds']} s, total wall {run['wall_seconds']} s; "
        f"test: {_docs(run['docs_per_split'])}, dev (calibration): {_docs(run.get('dev_docs'))}.",
    ]
    return "\n".join(lines) + "\n"


def _setting(setting: dict) -> str:
    how = "replace" if setting["fuse_weight"] is None else f"fuse {setting['fuse_weight']}"
    if setting["threshold"] >= 1.0:
        return "no routing"
    labels = setting["route_labels"]
    parts = [how, "NONE removes" if setting["remove_none"] else "NONE keeps"]
    return ", ".join(parts + ([f"labels {'/'.join(labels)}"] if labels else []))


def _docs(limit: int | None) -> str:
    return f"first {limit} docs" if limit else "all docs"


def plot_risk_coverage(curves: dict, path: Path, name: str) -> bool:
    """One risk-coverage curve per uncertainty method, as a PNG; False (nothing
    written) when matplotlib, an optional dependency, is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for method, (coverage, risk) in curves.items():
        ax.plot(coverage, risk, label=method)
    ax.set_xlabel("coverage (most certain entities kept)")
    ax.set_ylabel("risk (error rate among kept)")
    ax.set_title(f"Risk-coverage, {name} test")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
