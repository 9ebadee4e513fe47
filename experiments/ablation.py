"""Each trick on its own: a base recipe and variants of it (each a few config overrides),
trained for several seeds at the same budget and judged on the validation split alone
(``eval.test`` false: no test figure is computed), with each variant's effect on
validation accuracy (paired by seed against the base) and on training time.

Each run is an ordinary fashionbench run under OUT/runs/VARIANT-sSEED, trained by
``train_or_resume`` (finished ones kept, interrupted ones resumed, so the script goes on
where it stopped), seed by seed and the variants of a seed one after another, so that a
stopped ablation has every variant at the same number of seeds and the times compare
(leave the machine alone). Writes OUT/ablation.md and OUT/ablation.json: each variant's
overrides, per seed its validation accuracy and training seconds, and the machine.

    python experiments/ablation.py --recipe recipes/speedrun_net.yaml --set epochs=6 \\
        --variant ema=ema.enabled=true --variant no-tta=eval.tta=false --seeds 0,1,2 \\
        --out results/ablations/speedrun-6-epochs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from fashionbench import runs
from fashionbench.config import load_config, parse_override
from fashionbench.data import load_fashion_mnist
from fashionbench.errors import FashionbenchError, UsageError
from fashionbench.pages import md_table
from fashionbench.rundir import RunDir, State, read_summary
from fashionbench.tasks.leaderboard import mean_std
from fashionbench.training import train_or_resume

BASE = "base"
# Every run of an ablation: judged on validation, never on the test set.
VALIDATION_ONLY = "eval.test=false"


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'ema=ema.enabled=true,ema.decay=0.9' -> ('ema', ['ema.enabled=true', 'ema.decay=0.9'])."""
    name, sep, overrides = text.partition("=")
    if not sep or not name or not overrides or name == BASE or not name.replace("-", "").replace("_", "").isalnum():
        raise UsageError(f"--variant expects NAME=key=value[,key=value...] with a NAME of letters, digits, '-' "
                         f"or '_' other than {BASE!r}, got {text!r}")
    return name, overrides.split(",")


def config(recipe: Path, common: list[str], seed: int, overrides: list[str]):
    """The recipe with the ablation's common overrides, the seed and one variant's overrides."""
    items = [*common, f"seed={seed}", *overrides, VALIDATION_ONLY]
    return load_config(config_file=recipe, overrides=[parse_override(item) for item in items])


def figures(out: Path, variants: dict[str, list[str]], seeds: list[int]) -> dict[str, dict[int, dict]]:
    """Per variant, per seed whose run has finished: validation accuracy (%) and training seconds."""
    found: dict[str, dict[int, dict]] = {}
    for name in variants:
        for seed in seeds:
            path = out / "runs" / f"{name}-s{seed}"
            if RunDir(path).state is State.COMPLETE:
                summary = read_summary(path)
                found.setdefault(name, {})[seed] = {"val_acc": 100 * summary.val_acc,
                                                     "train_seconds": summary.train_seconds}
    return found


def table(found: dict[str, dict[int, dict]], variants: dict[str, list[str]]) -> str:
    """Each variant against the base: validation accuracy over its seeds, the difference
    to the base seed by seed (mean ± std), training time (median) and its difference."""
    base = found.get(BASE, {})
    rows = []
    for name, overrides in variants.items():
        mine = found.get(name, {})
        if not mine:
            rows.append([name, f"`{' '.join(overrides) or '(the recipe)'}`", "not yet run", "", "", "", ""])
            continue
        paired = [seed for seed in mine if seed in base]
        acc = [mine[s]["val_acc"] for s in mine]
        seconds = [mine[s]["train_seconds"] for s in mine]
        delta = [mine[s]["val_acc"] - base[s]["val_acc"] for s in paired]
        delta_s = [mine[s]["train_seconds"] - base[s]["train_seconds"] for s in paired]
        rows.append([name, f"`{' '.join(overrides) or '(the recipe)'}`", mean_std(acc),
                     "" if name == BASE else f"{mean_std(delta)} ({len(paired)} paired)",
                     f"{statistics.median(seconds):.0f}",
                     "" if name == BASE or not paired else f"{statistics.median(delta_s):+.0f}",
                     ", ".join(str(s) for s in mine)])
    return md_table(["variant", "overrides", "val %", "against the base (points, by seed)", "training s (median)",
                     "against the base (s)", "seeds"], rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", type=Path, required=True, help="the base recipe (a YAML file)")
    parser.add_argument("--set", dest="common", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of every run, the base's too (repeatable), e.g. the budget")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]",
                        help="a variant: the base with these overrides (repeatable)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated (default 0,1,2)")
    parser.add_argument("--train-subset", type=int, help="train on N images: a quick check, not a figure")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    variants = {BASE: [], **dict(map(parse_variant, args.variant))}
    seeds = [int(s) for s in args.seeds.split(",")]
    common = args.common + ([f"data.train_subset={args.train_subset}"] if args.train_subset else [])
    for overrides in variants.values():  # every config checked before anything trains
        config(args.recipe, common, seeds[0], overrides)
    data = load_fashion_mnist()
    for seed in seeds:
        for name, overrides in variants.items():
            train_or_resume(config(args.recipe, common, seed, overrides), data, args.out / "runs" / f"{name}-s{seed}",
                            f"{name} seed {seed}")
    found = figures(args.out, variants, seeds)
    text = table(found, variants)
    runs.write_text(args.out / "ablation.md", f"# {runs.command_line()}\n\nValidation split only.\n\n{text}\n")
    runs.write_text(args.out / "ablation.json", json.dumps(
        {"recipe": str(args.recipe), "common": common, "variants": variants, "seeds": seeds,
         "figures": {name: {str(s): f for s, f in by_seed.items()} for name, by_seed in found.items()},
         **runs.environment()}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    try:
        main()
    except FashionbenchError as e:  # a mistake in what was typed, or a damaged run folder: one line
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, UsageError) else 1)
