"""FAIR1M instance identification (Fig. 5, 11) and retrieval from other images (Fig. 6).

Data (docs/datasets.md §1, §4; `vitjax/data/loaders/object_tiles.py`): the images of a FAIR1M
split are cut into DOTA-style crops (1000 x 1000), every crop into a grid of 224 x 224 tiles (cut,
not resized; the last row/column zero-padded, padding = background). A tile shows a fine category when at least 1/3
of one of the category's instances (its area inside the crop) lies in the tile; 8 tiles per
category are then drawn greedily without reuse (`fewshot.select_tiles_per_category`). Each patch
gets the fine class, supercategory and instance under its centre (`patch_label_rule`).

Protocol, per model: the patch features of all original tiles form the database. Every tile is
perturbed (shift, rotation, scale, box blur, Gaussian noise, four levels each; plus the clean
tiles as level 0), and for each query patch the single nearest database patch (dot product) is
classified by `metrics.retrieval_outcomes` into the exclusive hierarchy same patch (the patch the
query's centre came from, `corruptions.correspondence_map`) > same fine category > same
supercategory > other object > background. Query patches are the non-background patches of the
original tile at the same grid position for every perturbation ([R1]; `query_labels='original'`),
so `upper_bound` (queries whose centre has a counterpart) is what same-patch can reach. Mode
`identification` searches all original patches; mode `retrieval` excludes the query's own tile
(or source image). Both are repeated with the N highest-variance dimensions removed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import ml_collections
import numpy as np

from vitjax import corruptions, errors, experiments, metrics, plotting
from vitjax.data import patch_labels, registry
from vitjax.data.types import ObjectTiles
from vitjax.experiments import common

MODES = ("identification", "retrieval")
QUERY_LABELS = ("original", "transformed")
# Name in config -> (corruption name of `corruptions.apply`, options builder).
PERTURBATIONS = ("shift", "rotate", "scale", "box_blur", "blur", "noise")
_OUTCOMES = metrics.RETRIEVAL_OUTCOMES
# The level of each perturbation that leaves a tile unchanged (where the clean point is drawn),
# and its axis label with units.
CLEAN_LEVEL = {
    "shift": 0.0,
    "rotate": 0.0,
    "scale": 1.0,
    "box_blur": 0.0,
    "blur": 0.0,
    "noise": 0.0,
}
LEVEL_LABELS = {
    "shift": "shift (px along shift_direction)",
    "rotate": "rotation (degrees, counter-clockwise)",
    "scale": "zoom factor (1 = clean)",
    "box_blur": "box blur kernel side (px; 0 = clean)",
    "blur": "Gaussian blur kernel side (px; 0 = clean)",
    "noise": "Gaussian noise sigma (0-255 scale)",
}


def load_tiles(cfg: ml_collections.ConfigDict, seed: int) -> ObjectTiles:
    """The tiles of `cfg.dataset` (an "object_tiles" dataset of `vitjax.data.registry`)."""
    field = "config.fair1m_retrieval.dataset"
    return registry.get_dataset(cfg.dataset, registry.OBJECT_TILES, field).load(cfg, seed)


# ---------------------------------------------------------------------------------------------
# Queries and outcomes on arrays.


@dataclasses.dataclass(frozen=True)
class PatchTable:
    """Labels of every patch of T tiles on a g x g grid, flattened row-major per tile ([T * N])."""

    fine: np.ndarray
    super: np.ndarray
    instance: np.ndarray
    tile: np.ndarray
    patch: np.ndarray  # index within its tile, 0..N-1
    group: np.ndarray  # exclusion group for retrieval (tile or source image)
    patches_per_tile: int


def patch_table(
    tiles: ObjectTiles, grid: tuple[int, int], rule: str = "centre", exclude: str = "tile"
) -> PatchTable:
    """Per-patch fine / super / instance labels of every tile (see `ObjectTiles`)."""
    labels = patch_labels.object_patch_labels(
        tiles.fine_mask, tiles.instance_mask, tiles.fine_to_super, grid, rule
    )
    n = grid[0] * grid[1]
    tile = np.repeat(np.arange(len(tiles), dtype=np.int64), n)
    if exclude == "tile":
        group = tile
    elif exclude == "image":
        group = np.repeat(np.asarray(tiles.source, np.int64), n)
    else:
        raise errors.ConfigError(
            f"config.fair1m_retrieval.exclude={exclude!r}: expected 'tile' or 'image'"
        )
    return PatchTable(
        fine=labels.fine.reshape(-1).astype(np.int64),
        super=labels.super.reshape(-1).astype(np.int64),
        instance=labels.instance.reshape(-1).astype(np.int64),
        tile=tile,
        patch=np.tile(np.arange(n, dtype=np.int64), len(tiles)),
        group=group,
        patches_per_tile=n,
    )


def query_selection(
    table: PatchTable, correspondence: np.ndarray, query_labels: str = "original"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which patches of the perturbed tiles are queries, their labels' rows, and their targets.

    Args:
      table: labels of the original patches.
      correspondence: int [N] flat original patch of each perturbed patch position (-1 = none),
        the same for every tile (`corruptions.correspondence_map(...).reshape(-1)`).
      query_labels: 'original' (non-background original patch at the same position: [R1]) or
        'transformed' (positions whose content comes from a non-background original patch).

    Returns:
      (rows int64 [Q]: positions in [T * N] of the query patches (their features),
       label_rows int64 [Q]: rows of `table` holding each query's labels,
       targets int64 [Q]: patch index in the query's tile it corresponds to, or -1).
    """
    n = table.patches_per_tile
    correspondence = np.asarray(correspondence, np.int64).reshape(-1)
    if correspondence.shape[0] != n:
        raise errors.ConfigError(
            f"correspondence map has {correspondence.shape[0]} patches; tiles have {n}"
        )
    targets_all = correspondence[table.patch]
    base = table.tile * n
    if query_labels == "original":
        label_rows = np.arange(table.fine.shape[0], dtype=np.int64)
    elif query_labels == "transformed":
        label_rows = np.where(targets_all >= 0, base + np.maximum(targets_all, 0), -1)
    else:
        raise errors.ConfigError(
            f"config.fair1m_retrieval.query_labels={query_labels!r}: expected one of {QUERY_LABELS}"
        )
    fine = np.where(label_rows >= 0, table.fine[np.maximum(label_rows, 0)], 0)
    rows = np.flatnonzero(fine != 0)
    return rows, label_rows[rows], targets_all[rows]


def outcome_counts(
    table: PatchTable,
    rows: np.ndarray,
    label_rows: np.ndarray,
    targets: np.ndarray,
    neighbours: np.ndarray,
) -> dict[str, int]:
    """`metrics.retrieval_outcomes` of queries given their nearest database patch.

    Args:
      table: labels of the database (= original) patches.
      rows, label_rows, targets: from `query_selection`.
      neighbours: int [Q] database row of each query's nearest neighbour.

    Returns:
      dict of int counts (see `metrics.retrieval_outcomes`).
    """
    neighbours = np.asarray(neighbours, np.int64)
    if (neighbours < 0).any():
        raise errors.VitjaxError("outcome_counts: a query has no neighbour (empty database?)")
    return metrics.retrieval_outcomes(
        table.fine[label_rows],
        table.super[label_rows],
        table.instance[label_rows],
        targets,
        table.fine[neighbours],
        table.super[neighbours],
        table.instance[neighbours],
        table.patch[neighbours],
        query_tile=table.tile[rows],
        nn_tile=table.tile[neighbours],
    )


def nearest(
    queries: np.ndarray,
    database: np.ndarray,
    metric: str,
    drop_dims: np.ndarray | None,
    query_groups: np.ndarray | None,
    db_groups: np.ndarray | None,
    knn_cfg: ml_collections.ConfigDict,
    mesh: Any = None,
) -> np.ndarray:
    """Row of the single nearest database vector of every query (ties -> lower row): int [Q].

    `knn_cfg` is `config.knn` (block sizes, compute_dtype; see `common.knn_search`); `mesh`
    (`ctx.mesh`) shards the database over its devices.
    """
    _, idx = common.knn_search(
        queries,
        database,
        1,
        knn_cfg,
        mesh,
        metric=metric,
        drop_dims=drop_dims,
        query_groups=query_groups,
        db_groups=db_groups,
    )
    return np.asarray(idx[:, 0], np.int64)


# ---------------------------------------------------------------------------------------------
# Perturbations.


def perturbation_cases(cfg: ml_collections.ConfigDict) -> list[tuple[str, float]]:
    """[('clean', 0.0)] + (perturbation, level) for every configured level."""
    names = list(cfg.perturbations)
    unknown = [p for p in names if p not in PERTURBATIONS]
    if unknown:
        raise errors.ConfigError(
            f"config.fair1m_retrieval.perturbations: unknown {unknown}; known {PERTURBATIONS}"
        )
    cases = [("clean", 0.0)]
    for name in names:
        if name not in cfg.levels:
            raise errors.ConfigError(f"config.fair1m_retrieval.levels has no entry {name!r}")
        cases.extend((name, float(level)) for level in cfg.levels[name])
    return cases


def _options(name: str, cfg: ml_collections.ConfigDict) -> dict[str, Any]:
    if name in ("shift", "rotate", "scale"):
        options: dict[str, Any] = {"mode": cfg.fill_mode}
        if name == "shift":
            options["direction"] = tuple(int(d) for d in cfg.shift_direction)
        return options
    return {}


def perturb(
    images: np.ndarray, name: str, level: float, cfg: ml_collections.ConfigDict, seed: int
) -> np.ndarray:
    """Perturbed copy of uint8 [T, S, S, 3] tiles, rounded back to uint8 (as if saved)."""
    if name == "clean":
        return images
    return common.corrupt(images, name, level, _options(name, cfg), seed)


def correspondence(
    name: str, level: float, size: int, patch_size: int, cfg: ml_collections.ConfigDict
) -> np.ndarray:
    """int [N] flat original patch of each patch of a perturbed tile (-1 = none)."""
    if name in ("clean", "blur", "box_blur", "noise"):
        kind, amount = "noise", 0.0  # photometric: identity
    else:
        kind, amount = name, level
    cmap = corruptions.correspondence_map(
        kind,
        amount,
        (size, size),
        patch_size,
        direction=tuple(int(d) for d in cfg.shift_direction),
    )
    return cmap.reshape(-1)


# ---------------------------------------------------------------------------------------------
# The experiment.


def flat_patches(
    ctx: experiments.Context,
    model: experiments.ModelHandle,
    images: np.ndarray,
    key: dict[str, Any],
    layer: int,
) -> np.ndarray:
    """Patch features of one layer, [T * N, D] row-major per tile, as stored (a memmap view:
    the database is read in chunks by the k-NN search, never copied whole)."""
    feats = ctx.features(model, images, key=key, layers=(layer,))
    return feats.flat_patches(ctx.layer_index(model, layer))


def _check(cfg: ml_collections.ConfigDict) -> None:
    common.require_fields(
        cfg, "fair1m_retrieval", defaults().keys(), "vitjax.experiments.fair1m_retrieval.defaults()"
    )
    if cfg.query_labels not in QUERY_LABELS:
        raise errors.ConfigError(
            f"config.fair1m_retrieval.query_labels={cfg.query_labels!r}: expected {QUERY_LABELS}"
        )


def _check_queries(ctx, cfg, tables: dict[str, PatchTable], num_tiles: int, where: str) -> None:
    """Raises when no model has a query patch on the clean tiles; warns for each model without."""
    counts = {name: int(np.count_nonzero(table.fine)) for name, table in tables.items()}
    if not any(counts.values()):
        raise errors.DatasetError(
            f"fair1m_retrieval: no query patch: in none of the {num_tiles} tiles of {where} does "
            f"a patch's label pixel (patch_label_rule={cfg.patch_label_rule}) lie on an object, "
            "e.g. because the objects are smaller than a patch; queries are the patches labelled "
            "with an object category (try patch_label_rule=mode or larger objects/tiles)"
        )
    for name, count in counts.items():
        if not count:
            ctx.warn(f"{name}: no patch of the clean tiles lies on an object: it has no queries")


def _row(model, mode, name, level, removed, counts) -> dict[str, Any]:
    row = {
        **common.model_row(model),
        "mode": mode,
        "perturbation": name,
        "level": level,
        "removed": int(removed),
        **counts,
    }
    total = max(counts["queries"], 1)
    for key in ("upper_bound", "same_patch", "at_least_fine", "at_least_super", "any_object"):
        row[f"{key}_frac"] = counts[key] / total
    return row


@experiments.register("fair1m_retrieval")
def run(ctx: experiments.Context, cfg: ml_collections.ConfigDict) -> experiments.Result:
    _check(cfg)
    tiles = load_tiles(cfg, ctx.seed)
    # Read-only: the content digest of the store key is then computed once, not once per model.
    tiles.images.flags.writeable = False
    size = cfg.tile_size
    ctx.log(f"{len(tiles)} tiles of {size} px from {cfg.dataset}")
    spec = registry.get_dataset(
        cfg.dataset, registry.OBJECT_TILES, "config.fair1m_retrieval.dataset"
    )
    where = f"{cfg.dataset} {cfg.root}/{cfg.split}" if spec.needs_root else cfg.dataset
    if not len(tiles):
        raise errors.DatasetError(
            f"fair1m_retrieval: no {size} px tile of {where} holds at least "
            f"{cfg.area_threshold:.2f} of an object (config.fair1m_retrieval.area_threshold"
            "), so there is nothing to query; check the root, split and max_images"
        )
    cases = perturbation_cases(cfg)
    base_key = {
        "dataset": f"fair1m_retrieval/{cfg.dataset}",
        "split": cfg.split,
        "tiles": experiments.stable_hash(tiles.names),
    }
    models = [m for m in ctx.models if common.runs_at(m, (size, size))]
    skipped = [m.name for m in ctx.models if m not in models]
    if skipped:
        ctx.log(f"skipping {skipped}: they cannot take {size} px tiles")
    if not models:
        raise errors.ConfigError(
            f"fair1m_retrieval: no model of config.models can take {size} px tiles "
            f"(config.fair1m_retrieval.tile_size); skipped {skipped}"
        )
    layer = cfg.layer
    tables, databases, orders = {}, {}, {}
    for model in models:
        grid = common.grid_of(model, (size, size))
        tables[model.name] = patch_table(tiles, grid, cfg.patch_label_rule, cfg.exclude)
    # Before any extraction: tiles without query patches must not cost a forward pass.
    _check_queries(ctx, cfg, tables, len(tiles), where)
    for model in models:
        clean_key = dict(base_key, perturbation="clean", level=0.0)
        databases[model.name] = flat_patches(ctx, model, tiles.images, clean_key, layer)
        orders[model.name] = common.variance_order(databases[model.name])
    rows: list[dict[str, Any]] = []
    start = time.monotonic()
    for name, level in ctx.progress(cases, len(cases), "perturbations"):
        perturbed = perturb(tiles.images, name, level, cfg, ctx.seed)
        perturbed.flags.writeable = False
        key = dict(base_key, perturbation=name, level=level)
        for model in models:
            table = tables[model.name]
            database = databases[model.name]
            if name == "clean":
                features = database
            else:
                features = flat_patches(ctx, model, perturbed, key, layer)
            cmap = correspondence(name, level, size, int(model.spec.patch_size), cfg)
            q_rows, label_rows, targets = query_selection(table, cmap, cfg.query_labels)
            if not q_rows.size:
                # A row of zero counts would read as "never found"; leave it out, say so.
                ctx.warn(
                    f"{model.name}, {name} level {level}: no query patch (query_labels="
                    f"{cfg.query_labels}); its rows are left out"
                )
                continue
            queries = np.asarray(features[q_rows], np.float32)
            removal = ctx.removal_counts(
                cfg.removed, database.shape[1], "config.fair1m_retrieval.removed", model.name
            )
            for removed in removal:
                drop = orders[model.name][: int(removed)] if removed else None
                for mode in MODES:
                    if mode == "retrieval" and len(np.unique(table.group)) < 2:
                        ctx.warn(
                            f"retrieval: every tile of {model.name} is in one "
                            f"{cfg.exclude} (config.fair1m_retrieval.exclude), so there is no "
                            "candidate from another one; only identification is reported"
                        )
                        continue
                    groups = (
                        (table.group[q_rows], table.group) if mode == "retrieval" else (None, None)
                    )
                    nn_rows = nearest(
                        queries, database, cfg.metric, drop, *groups, ctx.config.knn, ctx.mesh
                    )
                    counts = outcome_counts(table, q_rows, label_rows, targets, nn_rows)
                    rows.append(_row(model, mode, name, level, removed, counts))
    ctx.log(f"retrieval done in {time.monotonic() - start:.1f} s")
    return _result(ctx, cfg, tiles, rows, skipped)


def _result(
    ctx, cfg, tiles: ObjectTiles, rows: list[dict[str, Any]], skipped: list[str]
) -> experiments.Result:
    figures = {}
    families = {m.name: m.spec.family for m in ctx.models}
    perturbations = [p for p in dict.fromkeys(r["perturbation"] for r in rows) if p != "clean"]
    for mode, outcomes in (
        ("identification", ("same_patch_frac", "at_least_fine_frac")),
        ("retrieval", ("at_least_fine_frac", "at_least_super_frac")),
    ):
        panels: dict[str, dict] = {}
        keys = {}
        for r in rows:
            if r["mode"] != mode or r["removed"] != 0:
                continue
            # The clean tiles are every perturbation's starting point (its identity level).
            names = perturbations if r["perturbation"] == "clean" else [r["perturbation"]]
            for name in names:
                panel = panels.setdefault(name, {})
                for outcome in outcomes:
                    label = f"{r['model']} {outcome.removesuffix('_frac')}"
                    xs, ys = panel.setdefault(label, ([], []))
                    xs.append(CLEAN_LEVEL[name] if r["perturbation"] == "clean" else r["level"])
                    ys.append(r[outcome])
                    keys[label] = (families.get(r["model"], r["model"]), r["model"], outcome)
        for series in (s for panel in panels.values() for s in panel.values()):
            order = np.argsort(series[0], kind="stable")
            series[0][:] = [series[0][i] for i in order]
            series[1][:] = [series[1][i] for i in order]
        path = ctx.figure_path(mode)
        plotting.line_plot(
            path,
            {n: panels[n] for n in perturbations if n in panels},
            xlabel={n: LEVEL_LABELS.get(n, "level") for n in perturbations},
            ylabel="fraction of query patches (0-1)",
            keys=keys,
            mark=plotting.random_weights_mark(ctx.models),
        )
        figures[mode] = path
    per_category = np.bincount(tiles.category, minlength=len(tiles.fine_names))
    return experiments.Result(
        tables={"outcomes": rows},
        figures=figures,
        text={
            "summary": f"Instance identification and retrieval on {len(tiles)} {cfg.dataset} "
            f"tiles of {cfg.tile_size} px ({cfg.per_category} per fine category): is the "
            "nearest original patch of a perturbed patch the same patch, the same category, "
            "or something else?"
            + (
                f" Skipped (cannot take {cfg.tile_size} px tiles): {', '.join(skipped)}."
                if skipped
                else ""
            ),
            "outcomes": "Counts of the exclusive outcomes of each query patch's nearest "
            "neighbour (same_patch > same_fine > same_super > other_object > background), the "
            "same-patch upper bound, cumulative fractions; mode 'identification' searches all "
            f"original patches, 'retrieval' excludes the query's own {cfg.exclude}; 'removed' "
            "= highest-variance dims dropped from the similarity.",
            "identification": plotting.caption(
                "Fig. 5: measured fraction of query patches whose nearest original patch is "
                "the same patch (solid) or at least the same fine category (dashed), per "
                "perturbation level; the clean tiles are the point at the identity level.",
                None,
                ctx.models,
            ),
            "retrieval": plotting.caption(
                "Fig. 6: with the query's own tile excluded, measured fraction whose nearest "
                "patch has the same fine category (solid) or supercategory (dashed).",
                None,
                ctx.models,
            ),
        },
        scalars={
            "datasets": [cfg.dataset],
            "tiles": len(tiles),
            "tiles_per_category": {
                tiles.fine_names[c]: int(n) for c, n in enumerate(per_category) if c and n
            },
        },
    )


def defaults() -> ml_collections.ConfigDict:
    """The `fair1m_retrieval` section with the paper's protocol numbers."""
    s = ml_collections.ConfigDict()
    s.dataset = "fair1m"  # fair1m | synthetic (synthetic.aerial_tiles stand-in)
    s.root = "data/FAIR1M"
    s.split = "validation"  # [R1] used the labelled validation images
    s.max_images = 0  # > 0: only the first N images of the split (smoke runs)
    s.crop_size = 1000  # DOTA-devkit crops of the large images
    s.tile_size = 224  # cut from the crops, not resized
    s.tile_pad = "constant"  # zero padding of the last tile row/column, as the DOTA devkit
    s.per_category = 8  # tiles per fine category ("224_8shot")
    s.area_threshold = 1.0 / 3.0  # a tile shows a category if >= 1/3 of an instance lies in it
    s.patch_label_rule = "centre"  # pixel under the patch centre ([R1]: nearest-exact resize)
    # Query patches: 'original' = the non-background patches of the unperturbed tile, at the same
    # grid position for every perturbation ([R1]); 'transformed' = the patch whose content comes
    # from a non-background original patch (through the correspondence map).
    s.query_labels = "original"
    s.perturbations = ("shift", "rotate", "scale", "box_blur", "noise")
    s.levels = ml_collections.ConfigDict()
    s.levels.shift = (1, 2, 3, 4)  # pixels along `shift_direction`
    s.levels.rotate = (5.0, 10.0, 15.0, 20.0)  # degrees, counter-clockwise
    s.levels.scale = (0.8, 0.9, 1.1, 1.2)  # zoom about the tile centre
    s.levels.box_blur = (2, 4, 6, 8)  # box kernel side in pixels
    s.levels.blur = (3, 5, 7, 9)  # Gaussian kernel (used only if listed in `perturbations`)
    s.levels.noise = (10.0, 20.0, 30.0, 40.0)  # Gaussian sigma on the 0-255 scale
    s.shift_direction = (1, 0)  # (dx, dy) per shift unit
    s.fill_mode = "constant"  # border fill of rotate/scale/shift (black)
    s.metric = "dot"  # the paper's k-NN similarity
    s.removed = (0, 200)  # also with the N highest-variance feature dims removed (MAE's fix)
    s.exclude = "tile"  # retrieval from other images: exclude the query's own 'tile' or 'image'
    s.layer = -1
    # Synthetic stand-in (dataset = synthetic): candidate tiles drawn from synthetic.aerial_tiles.
    s.synthetic_candidates = 160
    return s
