"""The figures of docs/experiments/reference_protocol.md, written from the records under
``results/`` as the README's are (published.py runs these blocks too): the reference's
protocol rerun (its best epoch on test, its last epoch, the epoch validation would
choose), how far its published figures lie from that, and the two checks of what we kept
different (Keras' initialisation, all 60,000 training images).

A block whose records do not exist yet says "not yet run" with the command that makes them.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .models import reference_figures
from .pages import md_table
from .records import NOT_YET, finished_runs, record_link, trained_on
from .rundir import RunDir, State, read_summary
from .tasks.leaderboard import collect, mean_std
from .tasks.reproduce import protocol_figures

PROTOCOL_RUNS = "results/reference_protocol/runs"
PROTOCOL_COMMAND = "fashionbench reproduce --protocol reference --seeds 0,1,2 --out results/reference_protocol"
TABLE_RUNS = "results/table/runs"
KERAS_RUNS = "results/reference_protocol_keras_init/runs"
KERAS_COMMAND = "python experiments/keras_defaults.py --models mini_vgg,basic_cnn --seeds 0,1,2"
# All 60,000 training images: the validation split cannot be empty, so 10 images stay out.
ALL_IMAGES = "results/reference_protocol_60k/mini_vgg-s0"
ALL_IMAGES_COMMAND = ("fashionbench train --config recipes/reference/mini_vgg.yaml --set data.val_size=10 "
                      "--seed 0 --out results/reference_protocol_60k --name mini_vgg-s0")


def honest(root: Path, model: str) -> list[float]:
    """Test accuracy (%) of ``model``'s recorded runs of its own recipe (the README's row)."""
    runs = finished_runs(root, TABLE_RUNS).get(model, {})
    rows = [row for row in collect(list(runs)) if not row.leaky and row.recipe == "recipe"] if runs else []
    return rows[0].test_acc if rows else []


def spread_cell(values: list[float]) -> str:
    """'92.18 ± 0.35 (91.93 to 92.43)', or the one value."""
    return mean_std(values) + (f" ({min(values):.2f} to {max(values):.2f})" if len(values) > 1 else "")


def protocol_table(root: Path) -> str:
    """Per model: the published figure, the protocol's best and last epochs and the
    validation-chosen epoch over seeds, the best epochs, our honest recipe, the machine."""
    protocol = finished_runs(root, PROTOCOL_RUNS)
    if not protocol:
        return f"The reference's protocol rerun: {NOT_YET} (`{PROTOCOL_COMMAND}`)."
    header = ["model", "reference published %", "its protocol: best epoch on test % [selected on test] (range)",
              "last epoch %", "epoch chosen on val: test %", "best − last (points)", "best epochs (seeds)",
              "ours, honest (val-chosen, SWA) %", "trained on", "record"]
    rows = []
    for model, runs in protocol.items():
        f = protocol_figures(runs)
        ours = honest(root, model)
        seeds = ", ".join(f"{s.extra['best_epoch']} ({s.seed})" for s in runs.values())
        rows.append([f"`{model}`", f"{reference_figures()[model]:.2f}",
                     spread_cell(f["best"]), mean_std(f["last"]),
                     mean_std(f["on_val"]), mean_std([b - a for b, a in zip(f["best"], f["last"])]),
                     f"{seeds} of {next(iter(runs.values())).epochs}",
                     f"**{mean_std(ours)}** ({len(ours)} seeds)" if ours else NOT_YET,
                     trained_on(list(runs.values())), record_link(PROTOCOL_RUNS, model, list(runs))])
    return md_table(header, rows)


def gaps(root: Path) -> str:
    """Per model: is the published figure within the protocol's spread (does any seed's best
    epoch reach it), how far above it lies, and the protocol against our honest recipe."""
    protocol = finished_runs(root, PROTOCOL_RUNS)
    if not protocol:
        return f"How far the published figures lie from their protocol: {NOT_YET} (`{PROTOCOL_COMMAND}`)."
    lines = []
    for model, runs in protocol.items():
        published, best = reference_figures()[model], protocol_figures(runs)["best"]
        mean = statistics.fmean(best)
        spread = (f", {(published - mean) / statistics.stdev(best):.1f} standard deviations of the seeds"
                  if len(best) > 1 and statistics.stdev(best) > 0 else "")
        if published > max(best):
            reached = (f"no epoch of its one seed reaches it: {published - max(best):.2f} points above its best "
                       f"epoch" if len(best) == 1 else
                       f"no epoch of any of its {len(best)} seeds reaches it: {published - max(best):.2f} points "
                       f"above the best seed's best epoch ({published - mean:.2f} above their mean{spread})")
        else:
            reached = f"the best epoch of {sum(b >= published for b in best)} of its {len(best)} seeds reaches it"
        ours = honest(root, model)
        against = (f"; rerun as saved, the protocol's best epoch is {statistics.fmean(ours) - mean:.2f} points "
                   f"under our honest recipe ({mean_std(ours)}, chosen on validation)"
                   if ours and statistics.fmean(ours) > mean else
                   f"; our honest recipe: {mean_std(ours)}" if ours else "")
        lines.append(f"- `{model}`, published {published:.2f}: {reached}{against}.")
    return "\n".join(lines)


def keras_init(root: Path) -> str:
    """Per model: the protocol with Keras' initialisation against PyTorch's, same seeds."""
    keras = finished_runs(root, KERAS_RUNS)
    if not keras:
        return f"Keras' initialisation: {NOT_YET} (`{KERAS_COMMAND}`)."
    protocol = finished_runs(root, PROTOCOL_RUNS)
    header = ["model", "best epoch on test % [selected on test] (range)", "last epoch %",
              "against PyTorch's initialisation, same seeds (best epoch)", "published − best seed's best epoch",
              "trained on", "record"]
    rows = []
    for model in reference_figures():
        runs = keras.get(model)
        if not runs:
            if model in protocol:
                rows.append([f"`{model}`", NOT_YET, "", "", "", "", ""])
            continue
        f = protocol_figures(runs)
        seeds = {s.seed for s in runs.values()}
        torch_best = [100 * s.test_acc for s in protocol.get(model, {}).values() if s.seed in seeds]
        against = (f"{statistics.fmean(f['best']) - statistics.fmean(torch_best):+.2f} points"
                   if len(torch_best) == len(seeds) else "-")
        rows.append([f"`{model}`", spread_cell(f["best"]), mean_std(f["last"]), against,
                     f"{reference_figures()[model] - max(f['best']):.2f} points", trained_on(list(runs.values())),
                     record_link(KERAS_RUNS, model, list(runs))])
    return md_table(header, rows)


def all_images(root: Path) -> str:
    """MiniVGG's seed 0 trained on 59,990 images against the same seed on 55,000."""
    if RunDir(root / ALL_IMAGES).state is not State.COMPLETE:
        return f"All 60,000 training images: {NOT_YET} (`{ALL_IMAGES_COMMAND}`)."
    run = read_summary(root / ALL_IMAGES)
    last, best = 100 * run.accuracy("last", "test"), 100 * run.test_acc
    same_seed = [s for s in finished_runs(root, PROTOCOL_RUNS).get(run.model, {}).values() if s.seed == run.seed]
    against = (f"; seed {run.seed} on 55,000 images: {100 * same_seed[0].accuracy('last', 'test'):.2f}% at its "
               f"last epoch ({last - 100 * same_seed[0].accuracy('last', 'test'):+.2f} points)" if same_seed else "")
    return (f"`{run.model}` on {run.train_size:,} training images, seed {run.seed}: {last:.2f}% test at its last "
            f"epoch, {best:.2f}% at its best on test (epoch {run.extra['best_epoch']} of {run.epochs}){against}; "
            f"{reference_figures()[run.model] - best:.2f} points under the published "
            f"{reference_figures()[run.model]:.2f} (record [{ALL_IMAGES}]({ALL_IMAGES}); {trained_on([run])}).")


BLOCKS = {
    "protocol-table": protocol_table,
    "protocol-gaps": gaps,
    "keras-init": keras_init,
    "all-images": all_images,
}
DOCUMENT = "docs/experiments/reference_protocol.md"
