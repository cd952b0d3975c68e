"""The paper's comparisons on the embedded worlds: every recipe with every applicable method,
``fit`` then ``test`` on n held-out samples, written as Tables 1–3 and Sect. 5.3.

Writes ``benchmarks/results/paper_tables.md`` and ``.json`` (``--out`` elsewhere). Run:
``python benchmarks/paper_tables.py [--n 1000] [--recipes smile watermark] [--methods rank_s full_layer]``:
the rows run replace theirs in an existing ``paper_tables.json``, the others are kept. Each bar of the evaluation issue
is checked and the table says plainly where it is missed. The rank-1 edit's before/after grid of
each recipe is copied to ``grids/<recipe>.png`` beside the tables.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from report import machine, output, output_arguments

from lightning_rewrite.app.config import load_config
from lightning_rewrite.app.test import test
from lightning_rewrite.app.fit import fit

METHODS = {
    "domes_to_trees": ["rank_s", "full_layer", "all_weights"],
    "domes_to_spires": ["rank_s", "full_layer", "all_weights"],
    "smile": ["rank_s", "full_layer", "all_weights"],
    "watermark": ["rank_s", "dissect:30", "dissect:60"],
    "reflection": ["rank_s", "full_layer"],
}


def run_one(recipe: str, method: str, n: int, root: Path, grids: Path) -> dict:
    name, _, units = method.partition(":")
    overrides = [f"recipe={recipe}", f"edit.method={name}", "logger=none", "progress=false", f"test.n={n}",
                 f"out={root / recipe / method.replace(':', '_')}"]
    if units:
        overrides += [f"edit.units={units}", "trainer.max_steps=1"]
    cfg = load_config(overrides)
    start = time.perf_counter()
    fitted = fit(cfg, overrides, Path(cfg.out))
    measured = test(cfg, Path(cfg.out) / "test", Path(cfg.out) / "edit.safetensors")
    if method == "rank_s":
        grids.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(cfg.out) / "before_after.png", grids / f"{recipe}.png")
        pairs = Path(cfg.out) / "test" / "rule_pairs.png"
        if pairs.is_file():
            shutil.copyfile(pairs, grids / f"{recipe}_pairs.png")
    return {"fit": fitted, "test": measured, "seconds": round(time.perf_counter() - start, 1)}


def _f(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _lpips(t: dict) -> str:
    v = t.get("masked_lpips")
    return _f(v) if isinstance(v, float) else "n/a"


def _section(title: str, columns: list[str], rows: dict, cells, first: list[str] | None = None) -> list[str]:
    """A markdown table: one row per method, ``cells(test_metrics)`` giving its values."""
    out = [f"## {title}", "", "| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    if first:
        out.append("| " + " | ".join(first) + " |")
    out += [f"| {method} | " + " | ".join(cells(r["test"])) + " |" for method, r in rows.items()]
    return out


def _less_change(rows: dict, against: list[str] | None = None) -> bool:
    """Whether rank_s changes less outside the region than each method in ``against`` (default: all others)."""
    rank = rows.get("rank_s", {}).get("test", {}).get("masked_l1", float("inf"))
    others = [m for m in rows if m != "rank_s"] if against is None else [m for m in against if m in rows]
    return bool(others) and all(rank < rows[m]["test"]["masked_l1"] for m in others)


def _bar(ok: bool, rows: dict, against: list[str] | None = None) -> str:
    """'met', 'MISSED', or 'not run' when a row the bar compares (rank_s, a baseline) was not run."""
    ran = "rank_s" in rows and (against is None or any(m in rows for m in against))
    return "met" if ok else "MISSED" if ran else "not run"


def _idle(rows: dict, effect) -> str:
    """Names the baselines whose edit barely took (under a quarter of rank_s's effect): their
    small change outside the region is no edit, which the reader should see beside the bar."""
    rank = effect(rows["rank_s"]["test"]) if "rank_s" in rows else 0
    idle = [f"{m} {effect(r['test']):+.3f}" for m, r in rows.items() if m != "rank_s" and effect(r["test"]) < rank / 4]
    return f" (made almost no edit, so its small change is no rival: {', '.join(idle)})" if idle else ""


def tables(results: dict, n: int) -> str:
    """Markdown: one table per paper table, with each bar checked."""
    lines = [f"# The paper's tables on the embedded worlds (n = {n} held-out samples)", ""]
    rows = [r for recipe in results.values() for r in recipe.values()]
    lpips = next((r["test"]["masked_lpips"] for r in rows if "masked_lpips" in r["test"]), None)
    if isinstance(lpips, str):
        lines += [f"Masked LPIPS: n/a here — {lpips.removeprefix('unavailable: ')}.", ""]
    distance = next((r["fit"]["image_distance"] for r in rows if "image_distance" in r["fit"]), None)
    if distance:
        lines += [f"all_weights: L_constraint + L_smooth with ℓ = {distance} (Eq. 2–3), Adam 0.002, 400 steps.", ""]
    for recipe, target in (("domes_to_trees", "tree"), ("domes_to_spires", "spire")):
        if recipe not in results:
            continue
        rows = results[recipe]
        lines += _section(f"Table 2: {recipe}", [f"efficacy (dome → {target})", "masked L1", "masked LPIPS"], rows,
                          lambda t: [_f(t.get(f"efficacy_dome_to_{target}")), _f(t["masked_l1"], 4), _lpips(t)])
        rank = rows.get("rank_s", {}).get("test", {})
        eff_ok = rank.get(f"efficacy_dome_to_{target}", 0) >= 0.5
        spec_ok = _less_change(rows)
        idle = _idle(rows, lambda t, target=target: t.get(f"efficacy_dome_to_{target}", 0))
        lines += ["", f"Bar: efficacy ≥ 0.50 — {_bar(eff_ok, rows)}; masked change below every baseline — "
                  f"{_bar(spec_ok, rows, [m for m in rows if m != 'rank_s'])}{idle}.", ""]
    if "smile" in results:
        rows = results["smile"]
        lines += _section("Table 1: smile", ["smile rate before", "after", "masked L1", "masked LPIPS"], rows,
                          lambda t: [_f(t["smiling_rate_before"]), _f(t["smiling_rate_after"]), _f(t["masked_l1"], 4), _lpips(t)])
        rank = rows.get("rank_s", {}).get("test", {})
        rise = rank.get("smiling_rate_after", 0) - rank.get("smiling_rate_before", 0)
        spec_ok = _less_change(rows)
        idle = _idle(rows, lambda t: t.get("smiling_rate_after", 0) - t.get("smiling_rate_before", 0))
        lines += ["", f"Bar: smile rate +30 points — {_bar(rise >= 0.3, rows)} (+{100 * rise:.1f}); "
                  f"masked change below the baselines — {_bar(spec_ok, rows, [m for m in rows if m != 'rank_s'])}{idle}.", ""]
    if "watermark" in results:
        rows = results["watermark"]
        first = next(iter(rows.values()))["test"]
        zones = ("center", "bottom", "any")
        lines += _section("Table 3: watermark", ["centre rate", "bottom rate", "any", "masked L1"], rows,
                          lambda t: [_f(t[f"watermark_{z}_rate_after"]) for z in zones] + [_f(t["masked_l1"], 4)],
                          first=["unedited"] + [_f(first[f"watermark_{z}_rate_before"]) for z in zones] + ["0"])
        rank = rows.get("rank_s", {}).get("test", {})
        cut = rank.get("watermark_any_rate_after", 1) <= first["watermark_any_rate_before"] / 5
        spec_ok = _less_change(rows, ["dissect:60"])
        lines += ["", f"Bar: rank-1 cuts the rate to ≤ 1/5 — {_bar(cut, rows)}; masked change below "
                  f"dissect 60 — {_bar(spec_ok, rows, ['dissect:60'])}.", ""]
    if "reflection" in results:
        rows = results["reflection"]
        lines += _section("Sect. 5.3: reflection", ["correlation before", "after", "masked L1 (outside window, reflection)"],
                          rows, lambda t: [_f(t["rule_correlation_before"]), _f(t["rule_correlation_after"]),
                                           _f(t["masked_l1"], 4)])
        rank = rows.get("rank_s", {}).get("test", {})
        ok = rank.get("rule_correlation_before", 0) >= 0.6 and rank.get("rule_correlation_after", 1) <= -0.2
        spec_ok = _less_change(rows, ["full_layer"])
        lines += ["", f"Bar: ≥ +0.6 before and ≤ −0.2 after — {_bar(ok, rows)}; rest of the image changes "
                  f"less than full_layer — {_bar(spec_ok, rows, ['full_layer'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--recipes", nargs="+", default=list(METHODS))
    parser.add_argument("--methods", nargs="+", help="only these methods' rows (default: every applicable one)")
    output_arguments(parser, "")
    args = parser.parse_args()
    args.out = output(args, "")
    stored = args.out / "paper_tables.json"
    results: dict = json.loads(stored.read_text())["results"] if stored.is_file() else {}
    if stored.is_file() and json.loads(stored.read_text())["n"] != args.n:
        results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes:
            rows = results.setdefault(recipe, {})
            for method in METHODS[recipe]:
                if args.methods is None or method.partition(":")[0] in args.methods:
                    rows[method] = run_one(recipe, method, args.n, Path(tmp), args.out / "grids")
    results = {r: {m: results[r][m] for m in METHODS[r] if m in results[r]} for r in METHODS if r in results}
    args.out.mkdir(parents=True, exist_ok=True)
    text = tables(results, args.n)
    print(text)
    (args.out / "paper_tables.md").write_text(text + "\n")
    (args.out / "paper_tables.json").write_text(json.dumps({"machine": machine(), "n": args.n, "results": results},
                                                           indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
