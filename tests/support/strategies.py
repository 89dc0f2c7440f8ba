"""Hypothesis strategies that more than one test module draws from."""

from __future__ import annotations

from hypothesis import strategies as st

__all__ = ["bounded_cpu_texts", "cpu_texts", "gpu_types"]

# CPU quantities as users write them: whole cores, millicores, and cores with three decimals.
cpu_texts = st.one_of(
    st.integers(min_value=1, max_value=10**9).map(str),
    st.integers(min_value=1, max_value=10**9).map(lambda n: f"{n}m"),
    st.integers(min_value=1, max_value=10**9).map(lambda n: f"{n // 1000}.{n % 1000:03d}"),
)
# The same within the bound a spec accepts (chalk.common.bounds: at most 1024 cores).
bounded_cpu_texts = st.one_of(
    st.integers(min_value=1, max_value=1024).map(str),
    st.integers(min_value=1, max_value=1_024_000).map(lambda n: f"{n}m"),
    st.integers(min_value=1, max_value=1_023_999).map(lambda n: f"{n // 1000}.{n % 1000:03d}"),
)
# GPU types as accelerator names are written: lowercase DNS labels.
gpu_types = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
