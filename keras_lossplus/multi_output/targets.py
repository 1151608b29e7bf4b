"""Matching losses, targets, sample weights and options to a model's outputs
by name, with errors that say which names were expected."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import keras

from keras_lossplus.losses.options import check_number
from keras_lossplus.multi_output.output_loss import resolve_loss


def model_output_names(model: keras.Model) -> Optional[List[str]]:
    """Output names of a functional model: the keys when it returns a dict,
    else `model.output_names`; `None` when the model has no graph
    (subclassed models: the names come from the `loss` dict)."""
    try:
        structure = model.output
    except (AttributeError, ValueError):
        return None
    if isinstance(structure, Mapping):
        return [str(name) for name in structure]
    return list(model.output_names)


def per_output(value: Any, names: Sequence[str], argument: str, *, required: bool) -> Dict[str, Any]:
    """`value` as a dict keyed by output name.

    A dict must use output names only (and, if `required`, name every
    output); a list or tuple gives one entry per output, in output order;
    anything else is used for every output. The user's object is never
    modified.
    """
    names = list(names)
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            raise ValueError(f"`{argument}` names unknown outputs {unknown}. The model's outputs are {names}.")
        missing = [n for n in names if n not in value]
        if required and missing:
            raise ValueError(
                f"`{argument}` has no entry for outputs {missing}. The model's outputs are {names}; "
                f"pass None for an output that has no {argument}."
            )
        return {n: value[n] for n in names if n in value}
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ValueError(
                f"`{argument}` has {len(value)} entries but the model has {len(names)} outputs {names}; "
                f"use a dict keyed by output name."
            )
        return dict(zip(names, value))
    if len(names) == 1 or not required:
        return {n: value for n in names}
    raise ValueError(f"`{argument}` must be a dict keyed by output name (outputs: {names}). Received: {value!r}")


def resolve_losses(loss: Any, names: Sequence[str]) -> Dict[str, keras.losses.Loss]:
    """`Loss` objects for the outputs that have a loss, in output order."""
    if loss is None:
        raise ValueError("`loss` is required: a dict from output name to loss (None for an output without one).")
    specs = per_output(loss, names, "loss", required=True)
    losses = {n: resolve_loss(spec, name=f"loss[{n!r}]") for n, spec in specs.items() if spec is not None}
    if not losses:
        raise ValueError(f"`loss` gives no loss to any output. Received: loss={loss!r}")
    return losses


def resolve_weights(loss_weights: Any, task_names: Sequence[str], names: Sequence[str]) -> List[float]:
    """The prior weight of each task (1.0 when not given); each must be a
    finite number >= 0."""
    if loss_weights is None:
        return [1.0] * len(task_names)
    given = per_output(loss_weights, names, "loss_weights", required=False)
    return [
        check_number(f"loss_weights[{n!r}]", given.get(n, 1.0) if given.get(n) is not None else 1.0, low=0.0)
        for n in task_names
    ]


def resolve_ignore_values(ignore_value: Any, names: Sequence[str]) -> Dict[str, Optional[float]]:
    """Per-output label value that marks a missing target (besides NaN)."""
    given = per_output(ignore_value, names, "ignore_value", required=False) if ignore_value is not None else {}
    return {
        n: None if given.get(n) is None else check_number(f"ignore_value[{n!r}]", given[n], allow_inf=True)
        for n in names
    }
