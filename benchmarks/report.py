"""``python -m benchmarks.report [results/full.json]``: a results file as a Markdown table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _ratio(row: dict[str, Any]) -> str:
    growth = row["extra"].get("growth")
    if growth:
        return f"{growth:.2f}x growth"
    return "-" if row["ratio"] is None else f"{row['ratio']:.2f}x"


def markdown(results: dict[str, Any]) -> str:
    head = [f"Machine: {results['machine']}"]
    if "decoder" in results:
        head.append(f"decoder {results['decoder']}")
    if "workers" in results.get("config", {}):
        head.append(f"{results['config']['workers']} DataLoader workers")
    lines = [
        "; ".join(head)
        + f"; run {results['date']} ({results['seconds']:.0f} s, {results['mode']}"
        + (f"; load average {results['load'][0]:.1f} at the end" if "load" in results else "")
        + ").",
        "",
        "| figure | link | annostream | baseline | unit | ratio | target |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results["rows"]:
        base = r["note"] if r["baseline"] is None and r["note"] else _fmt(r["baseline"])
        lines.append(
            f"| {r['figure']} | {r['link']} | {_fmt(r['ours'])} | {base} | {r['unit']} | "
            f"{_ratio(r)} | {r['target']} |"
        )
    return "\n".join(lines)


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results") / "full.json"
    print(markdown(json.loads(path.read_text())))


if __name__ == "__main__":
    main()
