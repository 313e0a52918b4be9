"""The pretraining loop: MAE or DINO on a ViT of any registered family shape.

One `jax.jit`-compiled step over extraction's device mesh (`extract.default_mesh`: the batch is
sharded over every device, parameters and optimiser state are replicated, so XLA inserts the
gradient all-reduce). AdamW (optax) with a linear warm-up + cosine learning rate. Training state
(parameters, optimiser state, teacher, centre, loss curve) is checkpointed with orbax every
`checkpoint_every` steps; a restarted run resumes from the latest complete checkpoint and, since
every step's randomness is a function of (seed, step) only, ends with the same parameters as an
uninterrupted one. The final encoder (+ MAE decoder) is written with `models.save`, so it loads
with `models.load` and can be named in any experiment config's `models`.

Workdir layout:
  state/              orbax CheckpointManager of the training state (resume)
  model/              the final checkpoint (`models.save`), unless `export_dir` names another place
  loss_curve.csv      step and CURVE_COLUMNS (every step)
  train_info.json     config, seed, command, seconds, images/s
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import shlex
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from vitjax import errors, extract, fileio, models, progress
from vitjax.pretrain import data as data_lib
from vitjax.pretrain import heads, losses, masking, optim, shipped

OBJECTIVES = ("mae", "dino")
STATE_DIR = "state"
MODEL_DIR = "model"
LOSS_FILE = "loss_curve.csv"
INFO_FILE = shipped.INFO_FILE
# Per-step columns of loss_curve.csv. DINO adds the teacher's collapse diagnostics
# (`losses.teacher_stats`): its mean entropy and the information its output carries about the image.
CURVE_COLUMNS = {
    "mae": ("loss",),
    "dino": ("loss", "teacher_entropy", "teacher_information"),
}
# A DINO run whose teacher carries less information than this (nats, mean over the last tenth of
# the steps) has collapsed: every image gets the same output distribution.
COLLAPSE_NATS = 0.1


def default_config() -> ml_collections.ConfigDict:
    """Every pretraining field with its default (a tiny MAE on the synthetic scenes)."""
    c = ml_collections.ConfigDict()
    c.objective = "mae"  # mae | dino
    c.seed = 0
    c.model = ml_collections.ConfigDict(
        dict(family="mae", size="ti", patch_size=16, depth=3)  # depth 0 = the variant's own
    )
    c.data = ml_collections.ConfigDict(
        dict(
            source="synthetic",
            root="",
            num_images=256,
            synthetic_hw=(224, 448),
            # Not a seed the experiments draw their scenes with (config.seed, seed + 1_000_003),
            # so a model trained here never saw the evaluation scenes.
            seed=424242,
            image_size=224,  # MAE input side
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=1000,
            batch_size=32,
            lr=1.5e-4 * 32 / 256 * 8,  # base lr (after warm-up)
            min_lr=1e-6,
            warmup_steps=50,
            weight_decay=0.05,
            # None: constant weight_decay; a float: cosine from weight_decay to it over the steps
            # (DINO: 0.04 -> 0.4).
            weight_decay_end=ml_collections.config_dict.placeholder(float),
            b1=0.9,
            b2=0.95,
            grad_clip=0.0,  # 0 = none
            # "global": one norm over all gradients; "per_parameter": each tensor's own (DINO).
            grad_clip_mode="global",
        )
    )
    c.mae = ml_collections.ConfigDict(
        dict(mask_ratio=0.75, norm_pix_loss=True, crop_scale=(0.2, 1.0))
    )
    c.dino = ml_collections.ConfigDict(
        dict(
            out_dim=1024,
            hidden_dim=512,
            bottleneck_dim=128,
            num_local=4,
            global_size=224,
            local_size=96,
            global_scale=(0.4, 1.0),
            local_scale=(0.05, 0.4),
            student_temp=0.1,
            teacher_temp=0.04,
            # Linear warm-up of the teacher temperature from warmup_teacher_temp over the first
            # warmup_teacher_temp_steps steps (0 = none), as DINO's per-epoch schedule.
            warmup_teacher_temp=0.04,
            warmup_teacher_temp_steps=0,
            # The head's last layer is not updated during the first steps (DINO: one epoch).
            freeze_last_layer_steps=0,
            # Photometric augmentation (DINO's): colour jitter and grayscale probabilities per
            # view, Gaussian blur probability of (global view 1, global view 2, local views),
            # solarisation probability of global view 2.
            jitter_prob=0.8,
            grayscale_prob=0.2,
            blur_probs=(1.0, 0.1, 0.5),
            solarize_prob=0.2,
            center_momentum=0.9,
            teacher_momentum=0.996,
        )
    )
    c.checkpoint_every = 100
    c.log_every_s = 10.0
    c.export_dir = ""  # final models.save checkpoint; "" = <workdir>/model
    # Replace a previous export at export_dir (a checkpoint with its train_info.json and
    # loss_curve.csv, nothing else); without it such a directory is refused before training.
    # The default <workdir>/model is the run's own output and is always re-exported.
    c.overwrite = False
    # Tag of the exported model: its spec name gets "-<name>" ("mae_vitti16-depth3-demo_mae"),
    # its weights_hash is "pretrained-<name>-seed<k>-<digest>"; "" = the objective.
    c.name = ""
    return c


def model_spec(config: ml_collections.ConfigDict) -> models.ModelSpec:
    """The spec being trained; MAE objective on a non-MAE family adds the tiny MAE decoder."""
    m = config.model
    overrides: dict[str, Any] = {}
    if int(m.depth) > 0:
        overrides["depth"] = int(m.depth)
    if config.objective == "mae":
        spec = models.get_spec(m.family, m.size, m.patch_size, **overrides)
        if not spec.has_decoder:
            overrides.update(
                has_decoder=True,
                decoder_width=128,
                decoder_depth=2,
                decoder_heads=4,
                decoder_mlp_dim=512,
            )
    return models.get_spec(m.family, m.size, m.patch_size, **overrides)


def export_base_name(config: ml_collections.ConfigDict) -> str:
    """The exported model's name before its tag: the variant and depth only
    ("dinov3_vitti16-depth3"), without the MAE decoder shapes a non-MAE family is given."""
    m = config.model
    depth = {"depth": int(m.depth)} if int(m.depth) > 0 else {}
    return models.get_spec(m.family, m.size, m.patch_size, **depth).name


def _check_train(t: ml_collections.ConfigDict) -> None:
    for field in ("steps", "batch_size"):
        if int(t[field]) < 1:
            raise errors.ConfigError(f"train.{field}: expected a positive int, got {t[field]}")
    if not 0 <= int(t.warmup_steps) < int(t.steps):
        raise errors.ConfigError(
            f"train.warmup_steps: expected 0 <= warmup < steps={t.steps}, got {t.warmup_steps}"
        )
    if t.grad_clip_mode not in optim.CLIP_MODES:
        raise errors.ConfigError(
            f"train.grad_clip_mode: expected one of {optim.CLIP_MODES}, got {t.grad_clip_mode!r}"
        )
    for field in ("weight_decay", "weight_decay_end", "grad_clip"):
        value = t[field]
        if value is not None and not (math.isfinite(float(value)) and float(value) >= 0):
            raise errors.ConfigError(f"train.{field}: expected a finite float >= 0, got {value}")


def _check(config: ml_collections.ConfigDict) -> None:
    if config.objective not in OBJECTIVES:
        raise errors.ConfigError(
            f"objective: expected one of {OBJECTIVES}, got {config.objective!r}"
        )
    _check_train(config.train)
    t = config.train
    d = config.dino
    for field in ("freeze_last_layer_steps", "warmup_teacher_temp_steps"):
        if not 0 <= int(d[field]) <= int(t.steps):
            raise errors.ConfigError(
                f"dino.{field}: expected 0 <= value <= train.steps={t.steps}, got {d[field]}"
            )
    probs = {f: d[f] for f in ("jitter_prob", "grayscale_prob", "solarize_prob")}
    probs.update({f"blur_probs[{i}]": p for i, p in enumerate(d.blur_probs)})
    for field, p in probs.items():
        if not 0.0 <= float(p) <= 1.0:
            raise errors.ConfigError(f"dino.{field}: expected a probability in [0, 1], got {p}")
    if len(d.blur_probs) != 3:
        raise errors.ConfigError(
            f"dino.blur_probs: expected 3 probabilities (global 1, global 2, local), "
            f"got {tuple(d.blur_probs)}"
        )
    for field in ("teacher_temp", "warmup_teacher_temp", "student_temp"):
        if not float(d[field]) > 0:
            raise errors.ConfigError(f"dino.{field}: expected a positive float, got {d[field]}")
    if int(config.checkpoint_every) < 1:
        raise errors.ConfigError(
            f"checkpoint_every: expected a positive int, got {config.checkpoint_every}"
        )


def init_state(config: ml_collections.ConfigDict, spec: models.ModelSpec):
    """(state, optimizer, dino head module or None); state is a dict of arrays."""
    seed = int(config.seed)
    params = models.init_params(spec, seed)
    head = None
    if config.objective == "dino":
        d = config.dino
        head = heads.DINOHead(int(d.out_dim), int(d.hidden_dim), int(d.bottleneck_dim))
        head_params = head.init(jax.random.key(seed + 1), jnp.zeros((1, spec.width), jnp.float32))[
            "params"
        ]
        params = {"encoder": params, "head": head_params}
    else:
        params = {
            "encoder": {k: v for k, v in params.items() if k != "decoder"},
            "decoder": params["decoder"],
        }
    optimizer = optim.make_optimizer(config, params, spec)
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": optimizer.init(params),
        "curve": jnp.full(
            (int(config.train.steps), len(CURVE_COLUMNS[config.objective])), jnp.nan, jnp.float32
        ),
    }
    if config.objective == "dino":
        state["teacher"] = jax.tree.map(jnp.copy, params)
        state["center"] = jnp.zeros((int(config.dino.out_dim),), jnp.float32)
    return state, optimizer, head


def _mae_step(config, spec, encoder, decoder, optimizer):
    ratio = float(config.mae.mask_ratio)
    norm_pix = bool(config.mae.norm_pix_loss)

    def loss_fn(params, images, key):
        x = models.preprocess(spec, images)
        grid = (x.shape[1] // spec.patch_size, x.shape[2] // spec.patch_size)
        keep, mask, _ = masking.random_masking(key, x.shape[0], grid[0] * grid[1], ratio)
        tokens = encoder.apply({"params": params["encoder"]}, x, keep_indices=keep)["tokens"]
        tokens = models.decoder_inputs(tokens, spec.class_token, spec.num_registers)
        pred = decoder.apply({"params": params["decoder"]}, tokens, keep_indices=keep, grid=grid)
        return losses.mae_loss(pred, models.patchify(x, spec.patch_size), mask, norm_pix)

    def step(state, images, key):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], images, key)
        params, opt_state = optim.apply_gradients(
            optimizer, state["params"], state["opt_state"], grads
        )
        new = dict(state)
        new["params"] = params
        new["opt_state"] = opt_state
        new["curve"] = state["curve"].at[state["step"]].set(loss[None])
        new["step"] = state["step"] + 1
        return new, loss[None]

    return step


def _dino_step(config, spec, encoder, head, optimizer):
    d = config.dino
    total = int(config.train.steps)
    last = spec.depth - 1

    def embed(params, crops):
        # crops: uint8 [B, V, S, S, 3] -> head outputs [V, B, K]
        batch, views = crops.shape[:2]
        x = models.preprocess(spec, crops.reshape(batch * views, *crops.shape[2:]))
        cls = encoder.apply({"params": params["encoder"]}, x, layers=(last,))["cls"][last]
        out = head.apply({"params": params["head"]}, cls)
        return out.reshape(batch, views, -1).transpose(1, 0, 2)

    def loss_fn(params, teacher_params, center, glob, loc, teacher_temp):
        teacher = jax.lax.stop_gradient(embed(teacher_params, glob))
        student = embed(params, glob)
        if loc.shape[1]:
            student = jnp.concatenate([student, embed(params, loc)], axis=0)
        loss = losses.dino_loss(student, teacher, center, float(d.student_temp), teacher_temp)
        return loss, teacher

    def step(state, batch, key):
        del key  # DINO's randomness is all in the host-side crops
        glob, loc = batch
        teacher_temp = losses.teacher_temperature(
            state["step"],
            float(d.warmup_teacher_temp),
            float(d.teacher_temp),
            int(d.warmup_teacher_temp_steps),
        )
        (loss, teacher), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["teacher"], state["center"], glob, loc, teacher_temp
        )
        frozen = state["step"] < int(d.freeze_last_layer_steps)
        params, opt_state = optim.apply_gradients(
            optimizer, state["params"], state["opt_state"], grads, frozen
        )
        m = losses.teacher_momentum(state["step"], float(d.teacher_momentum), total)
        metrics = jnp.concatenate(
            [loss[None], losses.teacher_stats(teacher, state["center"], teacher_temp)]
        )
        new = dict(state)
        new["params"] = params
        new["opt_state"] = opt_state
        new["teacher"] = losses.ema(state["teacher"], params, m)
        new["center"] = losses.update_center(state["center"], teacher, float(d.center_momentum))
        new["curve"] = state["curve"].at[state["step"]].set(metrics)
        new["step"] = state["step"] + 1
        return new, metrics

    return step


def _host_batch(config, source, step: int, batch_size: int):
    rng = data_lib.step_rng(int(config.seed), step)
    if config.objective == "mae":
        return data_lib.mae_batch(
            rng, source, batch_size, int(config.data.image_size), tuple(config.mae.crop_scale)
        )
    d = config.dino
    return data_lib.dino_batch(
        rng,
        source,
        batch_size,
        int(d.global_size),
        int(d.local_size),
        int(d.num_local),
        tuple(d.global_scale),
        tuple(d.local_scale),
        float(d.jitter_prob),
        float(d.grayscale_prob),
        tuple(float(p) for p in d.blur_probs),
        float(d.solarize_prob),
    )


def _fmt(columns: tuple[str, ...], values: np.ndarray) -> str:
    return ", ".join(f"{c} {float(v):.4f}" for c, v in zip(columns, values))


def collapse_warnings(config: ml_collections.ConfigDict, curve: np.ndarray) -> list[str]:
    """The warnings a finished run's curve calls for (DINO: a collapsed teacher), else [].

    Args:
      config: the run's config; curve: float [steps, len(CURVE_COLUMNS[objective])].
    """
    if config.objective != "dino":
        return []
    tail = curve[-max(1, len(curve) // 10) :]
    information = float(np.mean(tail[:, 2]))
    if information >= COLLAPSE_NATS:
        return []
    entropy = float(np.mean(tail[:, 1]))
    kind = "uniform" if entropy > 0.5 * math.log(int(config.dino.out_dim)) else "one-hot"
    return [
        f"the DINO teacher collapsed: over the last {len(tail)} steps its output carried "
        f"{information:.4f} nats of information about the image (< {COLLAPSE_NATS}; at most "
        f"ln K = {math.log(int(config.dino.out_dim)):.2f}) and was {kind} (entropy "
        f"{entropy:.2f} nats): every image gets the same prototypes, so the encoder learned "
        "little. Try a lower dino.teacher_temp, dino.freeze_last_layer_steps, more steps or "
        "more varied images"
    ]


def command_line() -> str:
    """The command that started this process (for the provenance file)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("pretrain", "__main__.py")):
        argv[0:1] = ["-m", "vitjax.pretrain"]  # how `python -m vitjax.pretrain` shows in argv
    return " ".join(shlex.quote(a) for a in ["python", *argv])


def _write_outputs(workdir, config, state, spec, info) -> str:
    params = jax.device_get(state["params"])
    decoder = params.get("decoder") if config.objective == "mae" else None
    encoder = params["encoder"]
    if config.objective == "dino":
        # The teacher is the model DINO evaluates and ships.
        encoder = jax.device_get(state["teacher"])["encoder"]
    # The name plus a digest of the weights: experiment caches key on it, so a re-trained model
    # never reuses features of an earlier one.
    digest = hashlib.sha256()
    for key, value in sorted(models.flatten_params({"e": encoder, "d": decoder or {}}).items()):
        digest.update(key.encode() + np.ascontiguousarray(value, np.float32).tobytes())
    tag = config.name or config.objective
    out_spec = dataclasses.replace(
        spec,
        name=f"{export_base_name(config)}-{tag}",
        weights_hash=f"pretrained-{tag}-seed{int(config.seed)}-{digest.hexdigest()[:12]}",
    )
    info.update(model=out_spec.name, weights_hash=out_spec.weights_hash)
    curve = np.asarray(jax.device_get(state["curve"]))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", *CURVE_COLUMNS[config.objective]])
    for i, row in enumerate(curve):
        writer.writerow([i, *(f"{float(v):.6g}" for v in row)])
    files = {LOSS_FILE: buf.getvalue(), INFO_FILE: json.dumps(info, indent=1)}
    # The provenance files go inside the checkpoint's own atomic rename.
    path = models.save(
        _export_dir(config, workdir),
        encoder,
        out_spec,
        decoder_params=decoder,
        overwrite=_may_replace_export(config),
        extra_files={name: text.encode("utf-8") for name, text in files.items()},
    )
    for name, text in files.items():
        fileio.atomic_write_text(os.path.join(workdir, name), text)
    return path


def _export_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    return os.path.abspath(config.export_dir or os.path.join(workdir, MODEL_DIR))


def _may_replace_export(config: ml_collections.ConfigDict) -> bool:
    # The default export (<workdir>/model) is this run's own output, re-exported when a finished
    # run is started again; a folder named by export_dir is replaced only when asked.
    return bool(config.overwrite) or not config.export_dir


def _preflight(config: ml_collections.ConfigDict, workdir: str, images: Any, mesh) -> None:
    """Every check that can fail before any work: config, images, export folder, devices."""
    _check(config)
    if images is not None:
        data_lib.check_source(images)
    else:
        data_lib.check_data_config(config.data)
    models.check_checkpoint_dir(
        _export_dir(config, workdir),
        overwrite=_may_replace_export(config),
        flag="--config.overwrite=True",
    )
    batch_size = int(config.train.batch_size)
    if batch_size % mesh.size:
        raise errors.ConfigError(
            f"train.batch_size: {batch_size} must be a multiple of the {mesh.size} devices"
        )
    if jax.process_count() > 1:
        raise errors.ConfigError("pretraining runs in a single process (all local devices)")


def _resume(manager: ocp.CheckpointManager, state: dict) -> tuple[dict, int]:
    """(state, first step): the latest saved training state, or `state` and 0 for a new run."""
    if manager.latest_step() is None:
        return state, 0
    start = int(manager.latest_step())
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
        state = manager.restore(start, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises many types (ValueError, KeyError, tensorstore)
        raise errors.CheckpointError(
            f"{manager.directory}: cannot resume from step {start} with this config ({e}); "
            "the workdir holds a run of another config: use a new --workdir"
        ) from e
    logging.info("pretrain: resumed from step %d of %s", start, manager.directory)
    return state, start


def train(config: ml_collections.ConfigDict, workdir: str, images: Any = None) -> dict[str, Any]:
    """Trains (or resumes) and exports; returns the info dict also written to train_info.json.

    Args:
      config: `default_config()` with overrides (see configs/pretrain_*.py).
      workdir: folder of the resumable state, loss curve and (by default) the final model.
      images: optional training images instead of `config.data`: a uint8 [N, H, W, 3] array or
        any ImageSource (`len` and `images[i] -> uint8 [H, W, 3]`, sizes may differ, e.g.
        `extract.FileImageSource`). A resumed run must be given the same images.

    Returns:
      {"export_dir", "steps", "final_loss", "seconds", "images_per_s", "config", ...}.
    """
    workdir = os.path.abspath(workdir)
    mesh = extract.default_mesh()
    _preflight(config, workdir, images, mesh)
    spec = model_spec(config)
    os.makedirs(workdir, exist_ok=True)
    data_sharding = extract.batch_sharding(mesh)
    replicated = NamedSharding(mesh, P())
    batch_size = int(config.train.batch_size)

    state, optimizer, head = init_state(config, spec)
    encoder = models.create_model(spec)
    if config.objective == "mae":
        step_fn = _mae_step(config, spec, encoder, models.create_decoder(spec), optimizer)
    else:
        step_fn = _dino_step(config, spec, encoder, head, optimizer)

    manager = ocp.CheckpointManager(
        os.path.join(workdir, STATE_DIR),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False),
    )
    state, start = _resume(manager, state)
    state = jax.device_put(state, replicated)
    jitted = jax.jit(
        step_fn,
        in_shardings=(replicated, data_sharding, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )

    total = int(config.train.steps)
    # A finished run started again only re-exports: no images needed.
    source = None
    if start < total:
        source = images if images is not None else data_lib.load_source(config.data)
    columns = CURVE_COLUMNS[config.objective]
    last = [np.full(len(columns), np.nan)]
    bar = None
    base_key = jax.random.key(int(config.seed))
    t0 = time.monotonic()
    batch = _host_batch(config, source, start, batch_size) if start < total else None
    for step in range(start, total):
        state, metrics = jitted(state, batch, jax.random.fold_in(base_key, step))
        # Build the next batch while the device runs this step.
        batch = _host_batch(config, source, step + 1, batch_size) if step + 1 < total else None
        last[0] = np.asarray(metrics)
        if not np.isfinite(last[0][0]):
            raise errors.VitjaxError(
                f"pretrain: loss became {last[0][0]} at step {step}; lower train.lr"
            )
        name = f"pretrain {config.objective} {spec.name} step {step + 1}/{total}"
        if bar is None:
            # The clock starts after the first (compiling) step: images/s is the steady rate.
            logging.info(
                "%s (compiled in %.1f s), %s", name, time.monotonic() - t0, _fmt(columns, last[0])
            )
            t_steady = time.monotonic()
            bar = progress.Progress(
                total=(total - step - 1) * batch_size,
                unit="images",
                name=name,
                interval_s=float(config.log_every_s),
                log_fn=lambda line: logging.info("%s, %s", line, _fmt(columns, last[0])),
            )
        else:
            bar.name = name
            bar.update(batch_size)
        if (step + 1) % int(config.checkpoint_every) == 0 or step + 1 == total:
            manager.save(step + 1, args=ocp.args.StandardSave(state))
    manager.wait_until_finished()
    seconds = time.monotonic() - t0
    done = total - start
    steady_s = time.monotonic() - t_steady if done > 1 else 0.0
    info_path = os.path.join(workdir, INFO_FILE)
    if done == 0 and os.path.exists(info_path):
        # A finished run started again only re-exports: keep the training run's figures.
        with open(info_path, encoding="utf-8") as f:
            previous = json.load(f)
        info = dict(previous, config=config.to_dict(), command=command_line())
        info.setdefault("training_command", previous.get("command"))
        info["export_dir"] = _write_outputs(workdir, config, state, spec, info)
        return info
    curve = np.asarray(jax.device_get(state["curve"]))
    info = {
        "objective": config.objective,
        "model": spec.name,
        "seed": int(config.seed),
        "steps": total,
        "steps_this_run": done,
        "resumed_from": start,
        "batch_size": batch_size,
        "seconds_this_run": round(seconds, 1),
        # Steady rate: after the first step, which includes compilation.
        "images_per_s": round((done - 1) * batch_size / steady_s, 2) if steady_s > 0 else None,
        "final_loss": float(curve[-1, 0]),
        "devices": f"{mesh.size} x {jax.devices()[0].platform}",
        "command": command_line(),
        "config": config.to_dict(),
        # What the run read: config.data, or the images the caller gave (config.data unused).
        "data": "config.data"
        if images is None
        else f"given {type(images).__name__} of {len(images)} images (config.data unused)",
    }
    if bar is not None:
        bar.close()
    info["warnings"] = collapse_warnings(config, curve)
    for warning in info["warnings"]:
        logging.warning("pretrain: %s", warning)
    info["export_dir"] = _write_outputs(workdir, config, state, spec, info)
    logging.info("pretrain: wrote %s", info["export_dir"])
    return info
