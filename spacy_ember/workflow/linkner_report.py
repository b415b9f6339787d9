"""The tables and plot `evaluate-linkner` writes."""

from pathlib import Path

PLOT_HINT = "pip install spacy-ember[plot]"  # what the plot needs: matplotlib


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def results_table(name: str, results: dict, run: dict, fixed: float) -> str:
    """Markdown: per method, the calibrated test scores, scores at a fixed routed
    fraction, dev replace vs fuse, and what the LLM calls cost."""
    lines = [
        f"LinkNER on {name} test (threshold calibrated on dev, best F1, at most "
        f"{run['max_routed']:.0%} routed); LLM {run['llm']}",
        "",
        "| method | threshold | probe F1 | routed | LLM acc. | replace F1 | fuse F1 | oracle F1 "
        f"| ECE | @{fixed:.0%}: LLM acc. | replace F1 | fuse F1 | oracle F1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, r in results.items():
        a = r["at_fixed_fraction"]
        lines.append(
            f"| {m} | {r['threshold']:.4f} | {_pct(r['probe_f'])} | {_pct(r['routed_fraction'])}% "
            f"| {_pct(r['routed_llm_accuracy'])} | {_pct(r['replace_f'])} | {_pct(r['fuse_f'])} "
            f"| {_pct(r['oracle_f'])} | {r['ece']:.3f} | {_pct(a['llm_accuracy'])} "
            f"| {_pct(a['replace_f'])} | {_pct(a['fuse_f'])} | {_pct(a['oracle_f'])} |"
        )
    lines += [
        "",
        "Dev, at the calibrated threshold (replace vs fuse compared where it was chosen):",
        "",
        "| method | dev probe F1 | dev replace F1 | dev fuse F1 |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {m} | {_pct(r['dev_probe_f'])} | {_pct(r['dev_replace_f'])} | {_pct(r['dev_fuse_f'])} |"
        for m, r in results.items()
    ]
    lines += [
        "",
        f"LLM calls {run['llm_calls']} ({run['llm_requests']} requests, {run['cache_hits']} "
        f"from the cache, failures {run['failures'] or 'none'}), prompt tokens "
        f"{run['prompt_tokens']}, wall {run['wall_seconds']} s; test: "
        f"{_docs(run['docs_per_split'])}, dev (calibration): {_docs(run.get('dev_docs'))}.",
    ]
    return "\n".join(lines) + "\n"


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
