"""Building a model's graph inside `keras.saving.load_model` without Keras's object sharing.

`load_model` deserialises inside an object-sharing scope: an object serialised
twice gets a `shared_object_id` (its Python `id()`), and a later
deserialisation with that id returns the object recorded under it.
`keras.layers.Bidirectional` serialises the RNN layer it is given twice (once
for the forward copy, once for the backward one). When a model's constructor
builds several `Bidirectional` layers from temporary RNN layers, a later
temporary layer can get the `id()` of an earlier, garbage-collected one; its
"copies" are then the earlier `Bidirectional`'s layers. Loading fails with
"Forward layer and backward layer should have different `go_backwards`
value", or silently shares one RNN between two `Bidirectional` layers. It
depends on memory reuse, so it strikes some loads and not others (Keras
3.15).

Our models rebuild their whole graph from plain constructor arguments in
`from_config`, and `load_model` restores the weights by layer path afterwards,
so nothing inside the constructor needs to be shared with the rest of the
file: `from_config` builds the graph with the scope switched off.
"""

from __future__ import annotations

import contextlib

# The global attributes of `keras.src.saving.serialization_lib.ObjectSharingScope`.
_SHARING_ATTRIBUTES = ("shared_objects/id_to_obj_map", "shared_objects/id_to_config_map")


@contextlib.contextmanager
def outside_object_sharing():
    """Runs the block with Keras's object-sharing scope (of `load_model`) switched off.

    Restores the scope as it was afterwards, also on an error. Outside a load
    it changes nothing.
    """
    from keras.src.backend.common import global_state

    saved = {name: global_state.get_global_attribute(name) for name in _SHARING_ATTRIBUTES}
    for name in _SHARING_ATTRIBUTES:
        global_state.set_global_attribute(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            global_state.set_global_attribute(name, value)
