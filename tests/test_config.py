"""params.yaml validation: schema from the dataclasses, named errors, presets, settings."""
import copy
import re
import json

import pytest

from ebm_repro import config as C
from ebm_repro.params import SCHEMA_PATH, load_params, params_schema, validate_params


@pytest.fixture(scope="module")
def params():
    return load_params()


def test_repository_params_are_valid_and_resolve(params):
    for setting in ("paper", "smoke"):
        for v in params["variants"]:
            cfg = C.resolve(params, v, setting=setting)
            assert cfg.hp.sampler.n_steps > 0


def test_presets_apply_paper_text_values(params):
    code = C.resolve(params, "igebm_uncond", "paper", "code")
    text = C.resolve(params, "igebm_uncond", "paper", "paper_text")
    assert (code.hp.loss.kind, code.hp.optim.lr) == ("cd", 3e-4)
    assert (text.hp.loss.kind, text.hp.optim.lr) == ("ml", 1e-4)
    icd = C.resolve(params, "icd", "paper", "paper_text")
    assert icd.hp.sampler.step_size == 500 and icd.hp.optim.ema_decay == 0.9999


def test_smoke_overrides_shrink_but_keep_the_algorithm(params):
    paper, smoke = C.resolve(params, "icd", "paper"), C.resolve(params, "icd", "smoke")
    assert smoke.hp.model.width < paper.hp.model.width and smoke.prefix == "smoke/"
    assert smoke.hp.loss.kl_ent_coeff == paper.hp.loss.kl_ent_coeff
    assert smoke.hp.model.arch == paper.hp.model.arch


def test_schema_file_is_generated_from_the_dataclasses():
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(params_schema())), \
        "run python -m ebm_repro.params to regenerate workflow/schemas/params.schema.json"


@pytest.mark.parametrize("mutate, key", [
    (lambda p: p["recipes"]["igebm"]["sampler"].update(n_stepz=3), "recipes.igebm.sampler"),
    (lambda p: p["recipes"]["igebm"]["sampler"].update(n_steps="60"), "recipes.igebm.sampler.n_steps"),
    (lambda p: p["recipes"]["icd"]["train"].update(batch_size=0), "recipes.icd.train.batch_size"),
    (lambda p: p["recipes"]["icd"]["buffer"].update(reinit_frac=-0.1), "recipes.icd.buffer.reinit_frac"),
    (lambda p: p.update(setting="laptop"), "setting"),
    (lambda p: p["variants"]["icd"].update(recipe="nope"), "variants.icd.recipe"),
    (lambda p: p["inception"]["rows"][0].update(mode="conditional"), "inception.rows.0.mode"),
    (lambda p: p["inception"]["rows"][-1].update(mode="ensemble"), "mode 'ensemble' needs train.n_snapshots >= 2"),
    (lambda p: p["recipes"]["icd"]["test_sampling"].update(draw_size=2000), "draw_size (2000) > n_chains"),
    (lambda p: p["recipes"]["icd"]["test_sampling"].update(draw_size=10), "filling the buffer takes 100 iterations"),
    (lambda p: p["recipes"]["icd"]["test_sampling"].update(final_sweep_parts=3), "final_sweep_parts (3) must divide"),
    (lambda p: p["recipes"]["icd"]["test_sampling"].update(protocol="buffer"), "recipes.icd.test_sampling.protocol"),
    (lambda p: p["recipes"]["icd"]["metrics"].update(fid_reference="test"), "recipes.icd.metrics.fid_reference"),
    (lambda p: p["recipes"]["icd"]["optim"].update(ema_decay=0.0), "use_ema"),
])
def test_bad_values_are_refused_naming_the_key(params, mutate, key):
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(C.ConfigError, match=re.escape(key)):
        validate_params(p)


def test_training_hash_ignores_test_sampling_but_not_training(params):
    a = C.resolve(params, "icd", "smoke")
    p = copy.deepcopy(params)
    p["recipes"]["icd"]["test_sampling"]["n_iters"] = 77
    assert C.resolve(p, "icd", "smoke").training_hash() == a.training_hash()
    p["recipes"]["icd"]["sampler"]["step_size"] = 7.0
    assert C.resolve(p, "icd", "smoke").training_hash() != a.training_hash()


def test_variant_preset_overrides_apply_under_their_preset_only(params):
    """E17 IGEBM ImageNet32: code builds ResNet32Wider (256); paper_text the Fig. 15b net the paper names."""
    code = C.resolve(params, "igebm_imagenet32", setting="paper", preset="code", validated=True).hp.model
    text = C.resolve(params, "igebm_imagenet32", setting="paper", preset="paper_text", validated=True).hp.model
    assert (code.arch, code.width, code.dropout) == ("igebm_resnet32_wider", 256, 0.0)
    assert (text.arch, text.width) == ("igebm_resnet32_large_fig15b", 128)
    celeba = C.resolve(params, "icd_celebahq128", setting="paper", preset="paper_text", validated=True).hp
    assert celeba.sampler.step_size == 1000.0 and celeba.augment.jitter_strength == 1.0  # ICD App. C.2
