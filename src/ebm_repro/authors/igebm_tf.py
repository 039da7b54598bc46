"""IGEBM authors' TF1 checkpoints (openai/ebm_code_release @051850e) -> our IGEBMResNet, variable by variable.

File:line citations are to that commit; docs/fidelity_import.md has the full table.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ebm_repro import checkpoint as ck
from ebm_repro.authors import AuthorsCheckpointError, Ledger, iteration_from_name, strict_state
from ebm_repro.config import RunConfig
from ebm_repro.models.igebm import COND_BLOCKS, LARGE_BLOCKS

SCOPE = "context_0/"  # train.py:661 construct_weights('context_0'); test_inception.py:267 maps other scopes to it
# The code's residual-block scopes in forward order, per arch (models.py:283-292 ResNet32Large, :207-213 ResNet32).
BLOCK_SCOPES = {
    "igebm_resnet32_large": ("res_optim", "res_1", "res_2", "res_3", "res_4", "res_5", "res_6", "res_7", "res_8"),
    "igebm_resnet32": ("res_optim", "res_1", "res_2", "res_3", "res_4", "res_5"),
}
BLOCKS = {"igebm_resnet32_large": LARGE_BLOCKS, "igebm_resnet32": COND_BLOCKS}
# TF1 Adam slots "<var>/Adam", "<var>/Adam_1" and its beta powers (custom_adam.py:127-137): optimizer state.
OPTIMIZER = re.compile(r"^(beta[12]_power(_\d+)?|.+/Adam(_\d+)?)$")
TF_L2_EPS = 1e-12  # tf.nn.l2_normalize's epsilon

UNUSED_BIAS = "conv bias `b`: conv_block adds it only with use_bias=True, never set (utils.py:669,683-684,713)"
UNUSED_IN_BIAS = "input bias `gb` of a conv without extra_bias (utils.py:686-695)"
UNUSED_GAIN = "gain `g` of a conv without use_scale (utils.py:702-711)"
UNUSED_OFFSET = "gain offset `cb`: read only with use_scale and labels (utils.py:706)"
UNUSED_FC_DENSE = "fc_dense: built by ResNet32.construct_weights (models.py:214), never read by its forward"
UNUSED_ATTEN = "atten: self-attention weights, read only with --use_attention (models.py:247,327)"


def _read(prefix: Path) -> dict[str, np.ndarray]:
    """All variables of a TF checkpoint (prefix of .index/.data-*), via TensorFlow (optional extra [tf])."""
    try:
        import torchvision  # noqa: F401  first: importing torchvision 0.29 after TensorFlow 2.21 segfaults
    except ImportError:
        pass
    try:
        import tensorflow as tf
    except ImportError as e:
        raise AuthorsCheckpointError("reading the IGEBM authors' TensorFlow checkpoints needs TensorFlow: "
                                     "pip install -e .[tf]") from e
    if not Path(f"{prefix}.index").is_file():
        raise AuthorsCheckpointError(f"no TF checkpoint at {prefix} ({prefix}.index not found); pass the prefix, "
                                     f"e.g. .../cifar10_large_model_uncond/model_121200")
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        return {name: np.asarray(reader.get_tensor(name)) for name in reader.get_variable_to_shape_map()}
    except Exception as e:  # a truncated or foreign file: TF raises its own error types
        raise AuthorsCheckpointError(f"TensorFlow could not read {prefix}: {e}") from e


def checkpoint_files(prefix: Path) -> list[Path]:
    """The files a TF checkpoint prefix stands for (.index and every .data shard)."""
    return [Path(f"{prefix}.index")] + sorted(Path(prefix).parent.glob(Path(prefix).name + ".data-*"))


def _l2n(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(max(float(np.sum(x * x)), TF_L2_EPS))


def power_step(w_mat: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The code's spectral-norm power iteration from its stored u (utils.py:1035-1046), in float64.

    w_mat (K, O) as TF reshapes the kernel ([-1, c_out]), u (1, O) -> (u_hat (O,), v_hat (K,)); the code's
    sigma is v_hat W u_hat^T (utils.py:1051). FLAGS.spec_iter defaults to 1 (utils.py:13).
    """
    w = w_mat.astype(np.float64)
    v_hat = _l2n(u.astype(np.float64) @ w.T)      # (1, K)
    u_hat = _l2n(v_hat @ w)                       # (1, O)
    return u_hat[0], v_hat[0]


class _Converter:
    """Builds our state dict from the ledger; one method per kind of TF layer."""

    def __init__(self, led: Ledger, cfg: RunConfig):
        self.led, self.m, self.state = led, cfg.hp.model, {}
        self.sn = led.has(SCOPE + "c1_pre/c_u")  # FLAGS.spec_norm (train.py:86) leaves `c_u` beside each kernel
        if self.sn != self.m.spectral_norm:
            raise AuthorsCheckpointError(
                f"{led.where}: the checkpoint was trained with spectral norm {'on' if self.sn else 'off'} "
                f"(FLAGS.spec_norm), variant {cfg.variant!r} has model.spectral_norm={self.m.spectral_norm}")
        self.classes = self.m.n_classes or 1  # init_conv_weight: `classes` rows, a flat vector when 1 (utils.py:269)

    def conv(self, tf_scope: str, ours: str, c_in: int, c_out: int) -> None:
        """3x3 kernel HWIO -> OIHW; with spectral norm our `original` + (u, v) from one power step of their u."""
        s = SCOPE + tf_scope
        w = self.led.take(f"{s}/cweight", (3, 3, c_in, c_out))
        kernel = w.transpose(3, 2, 0, 1)                                    # (O, I, kh, kw)
        if not self.sn:
            self.state[f"{ours}.weight"] = kernel
            return
        u = self.led.take(f"{s}/c_u", (1, c_out))
        u_hat, v_hat = power_step(w.reshape(-1, c_out), u)                  # v_hat in TF (kh, kw, I) order
        self.state[f"{ours}.parametrizations.weight.original"] = kernel
        # torch flattens the kernel as (O, I*kh*kw): reorder v to (I, kh, kw); then u^T W v is the code's sigma
        self.state[f"{ours}.parametrizations.weight.0._u"] = u_hat
        self.state[f"{ours}.parametrizations.weight.0._v"] = v_hat.reshape(3, 3, c_in).transpose(2, 0, 1).ravel()

    def rows(self, name: str, dim: int) -> np.ndarray:
        """A per-class table (classes, dim); the code stores the unconditional one as a flat (dim,) vector."""
        shape = (self.classes, dim) if self.classes > 1 else (dim,)
        return self.led.take(name, shape).reshape(self.classes, dim)

    def drop_extras(self, tf_scope: str, c_in: int, c_out: int, keep: set[str]) -> None:
        """The conv's b / g / gb / cb its forward never reads (each still at its init 0 / 1 / 0 / 0)."""
        s = SCOPE + tf_scope
        inits = {"b": (0.0, UNUSED_BIAS), "g": (1.0, UNUSED_GAIN), "gb": (0.0, UNUSED_IN_BIAS),
                 "cb": (0.0, UNUSED_OFFSET)}
        for name, (init, why) in inits.items():
            if name not in keep:
                self.led.drop(f"{s}/{name}", why, init=init)

    def block(self, i: int, tf_scope: str, c_in: int, c_out: int) -> None:
        """smart_res_block (utils.py:511-579): c1 = conv(x + gb1[y]); c2 = conv(act(c1) + gb2[y]) * (g2[y] + cb2)."""
        ours = f"blocks.{i}"
        c1, c2 = f"{tf_scope}_res_c1", f"{tf_scope}_res_c2"
        self.conv(c1, f"{ours}.conv1", c_in, c_out)
        self.state[f"{ours}.bias1.weight"] = self.rows(f"{SCOPE}{c1}/gb", c_in)
        self.drop_extras(c1, c_in, c_out, keep={"gb"})
        # conv2: zero-init kernel with the lower-bound spectral norm (utils.py:425, 120-126; our SpectralNormAtMostOne)
        self.conv(c2, f"{ours}.conv2", c_out, c_out)
        self.state[f"{ours}.bias2.weight"] = self.rows(f"{SCOPE}{c2}/gb", c_out)
        gain = self.rows(f"{SCOPE}{c2}/g", c_out)
        if self.classes > 1:  # label @ g + cb (utils.py:706): our gain_offset, or folded into every class row
            cb = self.led.take(f"{SCOPE}{c2}/cb", (c_out,))
            if self.m.cond_gain_offset:
                self.state[f"{ours}.gain_offset"] = cb
            else:
                gain = gain + cb[None, :]
            self.drop_extras(c2, c_out, c_out, keep={"gb", "g", "cb"})
        else:                 # no labels: the scale is g alone (utils.py:702-711), cb unread
            self.drop_extras(c2, c_out, c_out, keep={"gb", "g"})
        self.state[f"{ours}.gain2.weight"] = gain
        if c_in != c_out:     # adaptive 3x3 conv shortcut (utils.py:429-439, 554-563)
            self.conv(f"{tf_scope}_res_adaptive", f"{ours}.shortcut", c_in, c_out)
            self.drop_extras(f"{tf_scope}_res_adaptive", c_in, c_out, keep=set())

    def head(self, c: int) -> None:
        """fc5 (init_fc_weight spec_norm=False, models.py:215/293): dense [in, out] -> Linear (out, in)."""
        if self.m.spectral_norm_head:
            raise AuthorsCheckpointError(f"{self.led.where}: the code's fc5 has no spectral norm; the variant sets "
                                         f"model.spectral_norm_head (preset paper_text?) -- use preset code")
        self.state["head.weight"] = self.led.take(SCOPE + "fc5/wweight", (c, 1)).T
        self.state["head.bias"] = self.led.take(SCOPE + "fc5/b", (1,))

    def drop_attention(self, c: int, k: int) -> None:
        """The unused self-attention weights; gamma (init 0, utils.py:370) still 0 proves it never ran."""
        s = SCOPE + "atten/"
        for part, width in (("q", k), ("k", k), ("v", c)):
            self.led.drop(f"{s}atten_{part}weight", UNUSED_ATTEN)
            if self.sn:
                self.led.drop(f"{s}atten_{part}_u", UNUSED_ATTEN)
            self.led.drop(f"{s}atten_{part}_b1", UNUSED_ATTEN, init=0.0)
        self.led.drop(f"{s}gamma", UNUSED_ATTEN, init=0.0)


def convert(cfg: RunConfig, prefix: Path) -> tuple[dict, None, dict]:
    """Map every variable of their checkpoint onto our net (strict both ways); returns (state, None, record)."""
    m = cfg.hp.model
    if m.arch not in BLOCK_SCOPES:
        raise AuthorsCheckpointError(f"variant {cfg.variant!r} has arch {m.arch!r}; the IGEBM TF checkpoints hold "
                                     f"{sorted(BLOCK_SCOPES)} (use preset code)")
    if m.arch == "igebm_resnet32_large" and m.n_classes:
        # ResNet32Large with --cclass ends in leaky_relu (models.py:339-342); our net ends in ReLU as uncond
        raise AuthorsCheckpointError("a conditional ResNet32Large ends in leaky ReLU, which our net does not have")
    led = Ledger(_read(prefix), f"TF checkpoint {prefix}")
    for name in list(led.arrays):
        if OPTIMIZER.match(name):
            led.drop(name, "optimizer state (Adam moments / beta powers)")
    foreign = [n for n in led.leftover() if not n.startswith(SCOPE)]
    if foreign:
        raise AuthorsCheckpointError(f"{led.where}: variables outside the model scope {SCOPE!r}: {foreign[:8]}")
    cv, f = _Converter(led, cfg), m.width
    # c1_pre: conv + leaky ReLU only (smart_conv_block defaults, models.py:317, utils.py:444-456)
    cv.conv("c1_pre", "stem", m.channels, f)
    cv.drop_extras("c1_pre", m.channels, f, keep=set())
    for i, (scope, (a, b, _)) in enumerate(zip(BLOCK_SCOPES[m.arch], BLOCKS[m.arch])):
        cv.block(i, scope, a * f, b * f)
    cv.head(BLOCKS[m.arch][-1][1] * f)
    if m.arch == "igebm_resnet32":
        for part in ("wweight", "w_u") if cv.sn else ("wweight",):
            led.drop(f"{SCOPE}fc_dense/{part}", UNUSED_FC_DENSE)
        led.drop(f"{SCOPE}fc_dense/b", UNUSED_FC_DENSE, init=0.0)
        cv.drop_attention(2 * f, f // 2)   # init_attention_weight(..., 2F, F/2) (models.py:217)
    else:
        cv.drop_attention(2 * f, f)        # init_attention_weight(..., 2F, F) (models.py:295)
    led.check_all_consumed()
    state = strict_state(cfg, cv.state, led.where)
    files = checkpoint_files(prefix)
    info = {"iteration": iteration_from_name(Path(prefix)),
            "files": {p.name: ck.file_digest(p) for p in files},
            **led.summary()}
    return state, None, info
