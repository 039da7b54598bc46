"""Simulator: box containment, reflection, speed conservation without drag/friction, determinism."""
import dataclasses

import numpy as np

from ebm_repro.experiments.particle.simulate import load_dataset, make_dataset, save_dataset, simulate, substep


def test_positions_stay_inside_box(physics):
    pos = simulate(physics, 200, 400, np.random.default_rng(0))
    assert pos.shape == (200, 400, 2)
    assert pos.min() >= physics.radius and pos.max() <= physics.box_size - physics.radius


def test_reflection_at_wall_mirrors_overshoot_and_flips_normal_velocity(physics):
    free = dataclasses.replace(physics, drag=0.0, friction=0.0)
    hi = free.box_size - free.radius
    p, v = np.array([[hi - 0.001, 0.5]]), np.array([[1.0, 0.3]])
    p2, v2 = substep(p, v, 0.01, free)
    np.testing.assert_allclose(p2, [[hi - 0.009, 0.503]])  # 0.01 travelled, 0.009 of it after the bounce
    np.testing.assert_allclose(v2, [[-1.0, 0.3]])  # only the normal component flips
    p3, v3 = substep(np.array([[0.5, free.radius + 0.002]]), np.array([[0.0, -0.5]]), 0.01, free)
    np.testing.assert_allclose(p3, [[0.5, free.radius + 0.003]])
    np.testing.assert_allclose(v3, [[0.0, 0.5]])


def test_speed_constant_between_collisions_without_drag_and_friction(physics):
    free = dataclasses.replace(physics, drag=0.0, friction=0.0)
    pos, vel = simulate(free, 50, 300, np.random.default_rng(1), return_velocity=True)
    speed = np.linalg.norm(vel, axis=-1)  # (N, T)
    np.testing.assert_allclose(speed, speed[:, :1].repeat(300, 1), rtol=1e-12)
    # From positions alone: a recorded step without a bounce covers exactly speed * dt.
    no_bounce = (np.sign(vel[:, 1:]) == np.sign(vel[:, :-1])).all(-1)  # (N, T-1)
    step = np.linalg.norm(np.diff(pos, axis=1), axis=-1)
    np.testing.assert_allclose(step[no_bounce], (speed[:, :1] * free.dt).repeat(299, 1)[no_bounce], rtol=1e-9)
    assert no_bounce.mean() > 0.5 and (~no_bounce).any()  # both cases were exercised


def test_drag_and_friction_only_slow_the_ball_and_friction_stops_it(physics):
    slow = dataclasses.replace(physics, friction=0.5)  # strong friction: every ball stops within 3 s
    pos, vel = simulate(slow, 30, 200, np.random.default_rng(2), return_velocity=True)
    speed = np.linalg.norm(vel, axis=-1)
    assert (np.diff(speed, axis=1) <= 1e-12).all()
    assert (speed[:, -1] == 0).all() and (np.diff(pos[:, -20:], axis=1) == 0).all()


def test_dataset_is_deterministic_and_round_trips(physics, smoke_cfg, tmp_path):
    a, b = make_dataset(physics, smoke_cfg.data), make_dataset(physics, smoke_cfg.data)
    np.testing.assert_array_equal(a["train"], b["train"])
    assert a["train"].shape == (smoke_cfg.data.n_train, smoke_cfg.data.n_steps, 2)
    assert a["test"].shape == (smoke_cfg.data.n_test, smoke_cfg.data.n_steps, 2)
    other = make_dataset(physics, dataclasses.replace(smoke_cfg.data, seed=smoke_cfg.data.seed + 1))
    assert not np.array_equal(a["train"], other["train"])
    more_test = make_dataset(physics, dataclasses.replace(smoke_cfg.data, n_test=3))
    np.testing.assert_array_equal(a["train"], more_test["train"])  # the test size never changes train
    save_dataset(tmp_path / "d.npz", a, {"k": 1})
    back, meta = load_dataset(tmp_path / "d.npz")
    np.testing.assert_array_equal(back["test"], a["test"])
    assert meta == {"k": 1}
