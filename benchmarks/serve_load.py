"""Load on `spacy_ember serve`: N concurrent streaming clients on loopback for a bounded
time, then the entities each stream delivered checked against a batch `nlp()` of the
same text.

The server runs as its own process (`python -m spacy_ember serve`, queue = N, so no
request is turned away); each client is an `openai.AsyncOpenAI` streaming chat request
after another, prompts rotating. Reports requests/s, generated tokens/s, p50/p95 of the
time to the first text and of the time per token (each request's text time over its
tokens), errors, entities delivered vs batch, and the server's peak resident memory.

Batch reads the same text as the LM did: the chat prompt, then the answer
(`entity_mismatches`: responses whose final entities differ from the answer's entities
in nlp(prompt + answer)). Run on the answer alone, nlp() lacks the question the LM had
read, so its features differ; `answer_alone_differs` counts how often its entities do.
Only one generation runs at a time (the LM gate), so time to first text grows with N.

    python benchmarks/serve_load.py training/conll2003/model-tuned --clients 8
"""

import argparse
import asyncio
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import openai  # noqa: E402
from common import git_commit, machine_info, write_report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "serve_load.json"
PROMPTS = [
    "Tell me about Paris.",
    "In two sentences, who was Nelson Mandela?",
    "Write one news sentence about Germany's chancellor meeting the French president.",
    "What is Microsoft, and where is it based?",
    "Summarise a football match between Manchester United and Real Madrid in two sentences.",
    "Who founded Apple, and in which city?",
    "Name three rivers in Europe and the countries they flow through.",
    "Write one sentence about the United Nations in New York.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a process, from /proc (Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def ents(doc) -> list[tuple[int, int, str]]:
    return [(e.start_char, e.end_char, e.label_) for e in doc.ents]


def batch_entities(nlp, prompt: str, text: str) -> list[tuple[int, int, str]]:
    """Batch NER over what the LM read while generating `text`: the prompt as the chat
    template renders it, then the answer (nlp() adds the same start token in front);
    the answer's entities, offsets into the answer."""
    from spacy_ember.generate.request import extractor_of, prompt_ids

    extractor = extractor_of(nlp, "ember_ner")
    ids = prompt_ids(nlp, [{"role": "user", "content": prompt}], None, "ember_ner")
    if ids[0] == extractor.start_token_id:
        ids = ids[1:]
    prefix = extractor.lm.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
    n = len(prefix)
    return [(s - n, e - n, label) for s, e, label in ents(nlp(prefix + text)) if s >= n]


def replay(events: list[dict]) -> list[tuple[int, int, str]]:
    """The entities a stream's events leave (entity, retract, relabel in order)."""
    live: dict[tuple[int, int], str] = {}
    for e in events:
        key = (e["start_char"], e["end_char"])
        if e["type"] == "retract":
            live.pop(key, None)
        else:
            live[key] = e["label"]
    return sorted((s, e, label) for (s, e), label in live.items())


async def one_request(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> dict:
    started = time.perf_counter()
    first = end = None
    text, events, usage = "", [], None
    stream = await client.chat.completions.create(
        model="ember",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                first = first or time.perf_counter()
                end = time.perf_counter()
                text += choice.delta.content
        events += (chunk.model_extra or {}).get("entities") or []
    tokens = usage.completion_tokens if usage else 0
    return {
        "prompt": prompt,
        "text": text,
        "entities": replay(events),
        "ttft": None if first is None else first - started,
        "per_token": None if first is None or tokens < 2 else (end - first) / (tokens - 1),
        "tokens": tokens,
        "seconds": time.perf_counter() - started,
    }


async def run_clients(base_url: str, clients: int, duration: float, max_tokens: int) -> tuple:
    results: list[dict] = []
    errors: list[str] = []
    deadline = time.perf_counter() + duration

    async def client_loop(k: int) -> None:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="-", max_retries=0, timeout=600)
        i = k
        while time.perf_counter() < deadline:
            try:
                results.append(await one_request(client, PROMPTS[i % len(PROMPTS)], max_tokens))
            except Exception as err:  # counted, never hidden
                errors.append(f"{type(err).__name__}: {err}")
            i += 1
        await client.close()

    started = time.perf_counter()
    await asyncio.gather(*(client_loop(k) for k in range(clients)))
    return results, errors, time.perf_counter() - started


def compare(results: list[dict], batch: dict) -> tuple[int, list[dict]]:
    """How many streams' entities differ from `batch[prompt, text]`, and 3 examples."""
    differ = [r for r in results if r["entities"] != batch[r["prompt"], r["text"]]]
    examples = [
        {"text": r["text"], "stream": r["entities"], "batch": batch[r["prompt"], r["text"]]}
        for r in differ[:3]
    ]
    return len(differ), examples


def quantiles(values: list[float]) -> dict:
    values = sorted(v for v in values if v is not None)
    if not values:
        return {"p50": None, "p95": None}
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return {"p50": round(statistics.median(values), 4), "p95": round(p95, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="trained pipeline (causal_lm + ember_ner)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds to start requests")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    port = free_port()
    command = [sys.executable, "-m", "spacy_ember", "serve", str(args.model), "--port", str(port)]
    command += ["--queue-size", str(args.clients), "--max-tokens", str(args.max_tokens)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    load_start = [round(x, 2) for x in os.getloadavg()]
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not start")
        warm = asyncio.run(run_clients(f"{base}/v1", 1, 0.0, 4))  # the LM's first call
        results, errors, wall = asyncio.run(
            run_clients(f"{base}/v1", args.clients, args.duration, args.max_tokens)
        )
        peak = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    load_end = [round(x, 2) for x in os.getloadavg()]
    del warm

    import spacy  # after the server stopped: the check does not share the CPU with it

    nlp = spacy.load(args.model)
    texts = {(r["prompt"], r["text"]) for r in results}
    same_input = {key: batch_entities(nlp, *key) for key in texts}
    answer_only = {key: ents(nlp(key[1])) for key in texts}
    mismatches, mismatch_examples = compare(results, same_input)
    differ_alone, differ_examples = compare(results, answer_only)
    tokens = sum(r["tokens"] for r in results)
    commit = git_commit()
    report = {
        "command": "python " + shlex.join(["benchmarks/serve_load.py", *sys.argv[1:]]),
        "commit": commit,
        "pipeline": str(args.model),
        "clients": args.clients,
        "duration_s": round(wall, 1),
        "max_tokens": args.max_tokens,
        "requests": len(results),
        "requests_per_s": round(len(results) / wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "time_to_first_text_s": quantiles([r["ttft"] for r in results]),
        "time_per_token_s": quantiles([r["per_token"] for r in results]),
        "errors": len(errors),
        "error_messages": errors[:10],
        "entities_delivered": sum(len(r["entities"]) for r in results),
        "entity_mismatches": mismatches,
        "mismatch_examples": mismatch_examples,
        "answer_alone_differs": differ_alone,
        "answer_alone_examples": differ_examples,
        "server_peak_rss_mb": peak,
        "example": {k: results[0][k] for k in ("prompt", "text", "entities")} if results else None,
        "machine": machine_info(load_average_at_start=load_start, load_average_at_end=load_end),
    }
    write_report(
        report,
        args.output,
        (
            "requests",
            "requests_per_s",
            "tokens_per_s",
            "time_to_first_text_s",
            "time_per_token_s",
            "errors",
            "entities_delivered",
            "entity_mismatches",
            "server_peak_rss_mb",
        ),
    )


if __name__ == "__main__":
    main()
