"""The backend training steps of the gradient-level strategies, end to end:
one `train_on_batch` with SGD against numpy per-task gradients of a tiny
linear model combined by the numpy reference of each method."""

import keras
import numpy as np
import pytest

import keras_lossplus as klp
from tests.multi_output import references as ref
from tests.multi_output.helpers import JIT


def tiny_model():
    """A shared linear trunk W (3 -> 2) and two linear heads a, b (2 -> 1)."""
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    trunk = keras.layers.Dense(2, use_bias=False, name="trunk")(inputs)
    return klp.MultiOutputModel(
        inputs,
        {
            "a": keras.layers.Dense(1, use_bias=False, name="a")(trunk),
            "b": keras.layers.Dense(1, use_bias=False, name="b")(trunk),
        },
    )


def numpy_task_gradients(x, y, W, ua, ub):
    """MSE of each head: gradients with respect to W (shared) and its own head."""
    h = x @ W
    grads = []
    for u, target in ((ua, y["a"]), (ub, y["b"])):
        r = h @ u - target  # (n, 1)
        d = 2.0 * r / len(x)
        grads.append((x.T @ (d @ u.T), h.T @ d))
    return grads


@pytest.mark.parametrize("method", ["pcgrad", "mgda", "gradnorm", "cagrad", "famo"])
def test_one_step_matches_numpy(rng, method):
    x = rng.normal(size=(8, 3)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32"), "b": -rng.normal(size=(8, 1)).astype("float32")}
    model = tiny_model()
    strategy = {"pcgrad": klp.weighting.PCGrad(shuffle=False), "gradnorm": klp.weighting.GradNorm(learning_rate=0.1)}.get(
        method, method
    )
    model.compile(keras.optimizers.SGD(0.5), loss={"a": "mse", "b": "mse"}, weighting=strategy, jit_compile=JIT)
    W, ua, ub = [np.asarray(keras.ops.convert_to_numpy(v.value), np.float64) for v in model.trainable_variables]
    (gWa, gua), (gWb, gub) = numpy_task_gradients(x, y, W, ua, ub)
    shared = np.stack([gWa.ravel(), gWb.ravel()])
    losses = [np.mean((x @ W @ u - y[k]) ** 2) for u, k in ((ua, "a"), (ub, "b"))]
    if method == "pcgrad":
        direction, heads = ref.pcgrad(shared), np.array([1.0, 1.0])
    elif method == "mgda":
        heads = ref.min_norm_weights(shared)
        direction = heads @ shared
    elif method == "gradnorm":  # first step: weights 1, update uses them
        heads = np.array([1.0, 1.0])
        direction = shared.sum(0)
    elif method == "cagrad":
        direction, heads = ref.cagrad(shared, alpha=0.5), np.array([1.0, 1.0])
    else:  # famo, first step: z uniform, weights z / (c (L + eps))
        z = np.array([0.5, 0.5])
        heads = z / (np.sum(z / np.array(losses)) * np.array(losses))
        direction = heads @ shared
    model.train_on_batch(x, y)
    W1, ua1, ub1 = [np.asarray(keras.ops.convert_to_numpy(v.value)) for v in model.trainable_variables]
    np.testing.assert_allclose(W1, W - 0.5 * direction.reshape(W.shape), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ua1, ua - 0.5 * heads[0] * gua, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ub1, ub - 0.5 * heads[1] * gub, rtol=1e-4, atol=1e-5)
    if method == "gradnorm":
        expected = ref.gradnorm_update([1.0, 1.0], shared, losses, losses, 1.5, 0.1)
        np.testing.assert_allclose(model.loss_weighting.task_weights.numpy(), expected, rtol=1e-4)
    if method == "famo":  # logits moved by the authors' Adam step with the losses after the step
        h1 = x @ W1
        new = [np.mean((h1 @ u - y[k]) ** 2) for u, k in ((ua1, "a"), (ub1, "b"))]
        logits, _ = ref.famo_logit_step(np.zeros(2), losses, new, None)
        np.testing.assert_allclose(model.loss_weighting.logits.numpy(), logits, rtol=1e-3, atol=1e-6)


def test_penalties_are_added_unprojected(rng):
    """With an add_loss penalty, PCGrad combines the task gradients only and
    adds the penalty's gradient as it is."""
    from keras_lossplus.layers import L2Penalty

    x = rng.normal(size=(8, 3)).astype("float32")
    y = {"a": rng.normal(size=(8, 1)).astype("float32"), "b": rng.normal(size=(8, 1)).astype("float32")}
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3,))
    trunk = L2Penalty(0.1, name="l2")(keras.layers.Dense(2, use_bias=False, name="trunk")(inputs))
    model = klp.MultiOutputModel(
        inputs,
        {"a": keras.layers.Dense(1, use_bias=False)(trunk), "b": keras.layers.Dense(1, use_bias=False)(trunk)},
    )
    model.compile(keras.optimizers.SGD(0.5), loss={"a": "mse", "b": "mse"}, weighting=klp.weighting.PCGrad(shuffle=False), jit_compile=JIT)
    W, ua, ub = [np.asarray(keras.ops.convert_to_numpy(v.value), np.float64) for v in model.trainable_variables]
    (gWa, _), (gWb, _) = numpy_task_gradients(x, y, W, ua, ub)
    penalty_grad = 0.1 * 2 * x.T @ (x @ W)  # L2Penalty: factor * sum of h^2
    expected = W - 0.5 * (ref.pcgrad(np.stack([gWa.ravel(), gWb.ravel()])).reshape(W.shape) + penalty_grad)
    model.train_on_batch(x, y)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.trainable_variables[0].value), expected, rtol=1e-4, atol=1e-5)
