"""Property-based fuzzing with hypothesis: whatever the bytes, a decode or the project's error.

hypothesis draws (and on failure shrinks) the inputs; the mutation operators
and the per-input checks are tools/fuzz.py's, so the long mutation run and
these properties judge outcomes the same way (run_one marks anything but
"ok" or a NacError class as a CRASH: other exceptions, hangs, broken
invariants).
"""

import random
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nac import codec
from test_fuzz import fuzz

SEEDS = fuzz.load_seeds()
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])


def assert_clean(data: bytes) -> None:
    with codec.torch_threads(1):
        outcomes = fuzz.run_one(data, full_salvage=False, time_limit=5.0)
    crashes = {stage: outcome for stage, outcome in outcomes.items() if outcome.startswith("CRASH")}
    assert not crashes, crashes


@PROPERTY_SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data):
    assert_clean(data)


@PROPERTY_SETTINGS
@given(st.integers(0, len(SEEDS) - 1), st.binary(min_size=1, max_size=64))
def test_seed_with_its_magic_and_garbage(index, garbage):
    assert_clean(SEEDS[index].data[:12] + garbage)


@PROPERTY_SETTINGS
@given(st.integers(0, 2**32 - 1))
def test_mutated_seeds(rng_seed):
    data, _ = fuzz.mutate(random.Random(rng_seed), SEEDS)
    assert_clean(data)


@PROPERTY_SETTINGS
@given(st.integers(0, len(SEEDS) - 1), st.sampled_from(sorted(fuzz.HEADER_FIELDS)), st.integers(0, 2**64 - 1))
def test_forged_header_field(index, field, value):
    """A fixed field of format 9's header, any value, the header's CRC recomputed (in a legacy header the same
    bytes land in other fields)."""
    offset, fmt = fuzz.HEADER_FIELDS[field]
    head = bytearray(SEEDS[index].data)
    width = struct.calcsize(fmt)
    value %= 1 << (8 * width)
    struct.pack_into(fmt, head, offset, value.to_bytes(width, "little") if fmt.endswith("s") else value)
    assert_clean(fuzz.resign(bytes(head), SEEDS[index].header_size))

