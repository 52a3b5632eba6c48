"""``import bpjax`` lowers JAX's threefry hash unrolled on the CPU
(``compilation_cache.unroll_threefry``): the same bits as JAX's own CPU rule and as
the Random123 known answers, and a program with no loop in it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax  # its import changes the rule
from bpjax import compilation_cache, nets

# private JAX API: where it moved, bpjax changes nothing (and these tests skip)
mlir = pytest.importorskip("jax._src.interpreters.mlir")
threefry = pytest.importorskip("jax._src.random.threefry2x32")
if not compilation_cache.unroll_threefry():
    pytest.skip("this JAX has no threefry lowering rule to change", allow_module_level=True)

# Random123's known answers for Threefry-2x32 with 20 rounds (its kat_vectors file):
# (key, counter) -> output, all as pairs of uint32.
KNOWN = [((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
         ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
         ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]


@pytest.mark.parametrize("key, count, expected", KNOWN)
def test_the_cpu_rule_gives_random123s_known_answers(key, count, expected):
    hashed = jax.jit(threefry.threefry_2x32)(np.uint32(key), np.uint32(count))
    assert [int(v) for v in hashed] == list(expected)


def draws():
    net = nets.mlp([4, 16, 3], activation="tanh")

    def one(seed):
        key = jax.random.fold_in(jax.random.key(0), seed)
        params = net.init(jax.random.split(key)[0], w_init=bpjax.initializers.normal(1.0))
        return params, jax.random.permutation(key, 50), jax.random.bits(key, (7,))

    return jax.jit(jax.vmap(one)).lower(jnp.arange(64)).compile()


@pytest.fixture
def jax_rule():
    """JAX's own CPU rule (a loop over the rounds), restored to bpjax's after the test."""
    mlir.register_lowering(threefry.threefry2x32_p, threefry._threefry2x32_cpu_lowering_rule,
                           platform="cpu")
    yield
    assert compilation_cache.unroll_threefry()


def test_unrolled_draws_are_jaxs_bits_with_no_loop(jax_rule):
    # (jax_rule is active inside the test; bpjax's rule is put back at its end)
    looped = draws()
    assert compilation_cache.unroll_threefry()
    unrolled = draws()
    for a, b in zip(jax.tree.leaves(looped(jnp.arange(64))),
                    jax.tree.leaves(unrolled(jnp.arange(64)))):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))
    assert " while(" in looped.as_text()
    assert " while(" not in unrolled.as_text()
