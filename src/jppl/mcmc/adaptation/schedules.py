"""Warm-up schedules as data: one entry per warm-up draw (NumPy arrays, fixed before tracing).

The warm-up loop reads the flags of draw ``i`` at step ``i``; as the schedule is the same for
every chain, the updates it triggers stay real ``lax.cond`` branches under ``vmap``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "NutpieSchedule",
    "WindowSchedule",
    "build_block_schedule",
    "build_nutpie_schedule",
    "build_schedule",
    "no_windows",
    "search_flags",
]


class WindowSchedule(NamedTuple):
    """Stan's warm-up schedule, one entry per warm-up draw (NumPy arrays of length
    ``num_warmup``).

    Attributes:
        window_index: int32, index ``0, 1, ...`` of the slow window the draw belongs to, ``-1``
            in the initial and terminal buffers.
        in_window: bool, the draw is added to the mass-matrix estimator.
        is_window_end: bool, the inverse mass matrix is updated after this draw (and the step
            size re-initialized, dual averaging restarted).
    """

    window_index: np.ndarray
    in_window: np.ndarray
    is_window_end: np.ndarray


def no_windows(num_warmup: int) -> WindowSchedule:
    """A schedule without slow windows: only the step size is adapted."""
    window_index = np.full(int(num_warmup), -1, np.int32)
    return WindowSchedule(window_index, window_index >= 0, np.zeros(int(num_warmup), bool))


def build_schedule(
    num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> WindowSchedule:
    """Stan's windowed-adaptation schedule.

    Rules (Stan's ``windowed_adaptation``): with fewer than 20 warm-up draws there are no slow
    windows. If ``init_buffer + base_window + term_buffer > num_warmup`` the buffers become
    ``int(0.15 * num_warmup)`` and ``int(0.1 * num_warmup)`` and the single base window takes
    the rest. The first window ends at ``init_buffer + base_window - 1``; after each window
    end the size doubles, and if the window after the next one would not end before the
    terminal buffer, the next window is stretched to end right before it.

    For ``num_warmup=1000``: 75 | 25, 50, 100, 200, 500 | 50.
    """
    n = int(num_warmup)
    if n < 20:
        return no_windows(n)
    window_index = np.full(n, -1, np.int32)
    is_window_end = np.zeros(n, bool)
    if init_buffer + base_window + term_buffer > n:
        init_buffer = int(0.15 * n)
        term_buffer = int(0.1 * n)
        base_window = n - (init_buffer + term_buffer)
    last = n - term_buffer - 1  # last draw of the last slow window
    start, size, index = init_buffer, base_window, 0
    end = init_buffer + base_window - 1
    while True:
        window_index[start : end + 1] = index
        is_window_end[end] = True
        if end >= last:
            break
        size *= 2
        next_end = end + size
        if next_end + 2 * size >= n - term_buffer:
            next_end = last
        start, end, index = end + 1, next_end, index + 1
    return WindowSchedule(window_index, window_index >= 0, is_window_end)


def build_block_schedule(
    num_warmup: int, init_buffer: int = 75, term_buffer: int = 50, base_window: int = 25
) -> tuple[WindowSchedule, np.ndarray]:
    """Stan's schedule for a block-diagonal metric adapted as a masked dense one.

    The windows of :func:`build_schedule` cover the first ``num_warmup - n_tune`` draws
    (``n_tune = max(1, round(0.1 * num_warmup))``); after the last of them the dense estimate
    is masked to the blocks, and the last ``n_tune`` draws only re-tune the step size.

    Returns:
        ``(schedule, apply_mask)``; ``apply_mask`` (bool, ``(num_warmup,)``) marks the draw
        after which the mask is applied (none below 20 draws, where nothing is windowed).
    """
    n = int(num_warmup)
    apply_mask = np.zeros(n, bool)
    if n < 20:
        return build_schedule(n), apply_mask
    n_tune = max(1, int(round(0.1 * n)))
    dense = build_schedule(n - n_tune, init_buffer, term_buffer, base_window)
    pad = lambda a, value: np.concatenate([a, np.full(n_tune, value, a.dtype)])
    schedule = WindowSchedule(
        pad(dense.window_index, -1), pad(dense.in_window, False), pad(dense.is_window_end, False)
    )
    apply_mask[n - n_tune - 1] = True
    return schedule, apply_mask


class NutpieSchedule(NamedTuple):
    """nutpie's warm-up schedule, one entry per warm-up draw (NumPy arrays of length
    ``num_warmup``). Draw ``i`` has sample number ``i + 1``; the initial point is sample 0.

    Attributes:
        adapt_mass: bool, the draw goes to the estimators and the mass matrix may change
            (false in the final step-size-only phase).
        switch: bool, after adding this draw the background estimator replaces the foreground.
        foreground_start: int32, sample number of the oldest draw in the foreground window
            after this draw (used by the low-rank ring buffer).
        update: bool, the mass matrix is recomputed after this draw (every
            ``update_freq`` draws once three samples are available, and at every switch).
        first_update: bool, the first update: the step size is searched again and dual
            averaging restarted.
        capacity: ``()`` int, the largest foreground window (ring-buffer size for low rank).
        early_end: ``()`` int, sample number of the last draw of the early window (short
            switch frequency; the low-rank variant uses only the diagonal until then).
    """

    adapt_mass: np.ndarray
    switch: np.ndarray
    foreground_start: np.ndarray
    update: np.ndarray
    first_update: np.ndarray
    capacity: int
    early_end: int


def build_nutpie_schedule(
    num_warmup: int,
    *,
    early_window: float = 0.3,
    step_size_window: float = 0.15,
    switch_freq: int = 80,
    early_switch_freq: int = 10,
    update_freq: int = 1,
) -> NutpieSchedule:
    """nutpie's schedule (see :mod:`jppl.mcmc.adaptation.nutpie`); switches and updates are
    decided from the draw index (as if every draw were kept), so they are the same for all
    chains."""
    n = int(num_warmup)
    early_end = int(early_window * n)
    final_start = n - int(step_size_window * n)
    adapt_mass = np.zeros(n, bool)
    switch = np.zeros(n, bool)
    foreground_start = np.zeros(n, np.int32)
    update = np.zeros(n, bool)
    first_update = np.zeros(n, bool)
    fg_start, bg_start = 0, 0  # sample numbers; the initial point (0) is in both
    fg_count, bg_count = 1, 1
    changed = False
    last_update = -1
    capacity = 1
    for i in range(n):
        sample = i + 1
        if i < final_start:
            adapt_mass[i] = True
            fg_count += 1
            bg_count += 1
            freq = early_switch_freq if i < early_end else switch_freq
            is_late = freq + i > final_start
            if bg_count >= freq and not is_late:
                switch[i] = True
                fg_start, fg_count = bg_start, bg_count
                bg_start, bg_count = sample + 1, 0
            if fg_count >= 3 and (switch[i] or i - last_update >= update_freq):
                update[i] = True
                last_update = i
                if not changed:
                    first_update[i] = True
                    changed = True
            capacity = max(capacity, sample - fg_start + 1)
        foreground_start[i] = fg_start
    return NutpieSchedule(
        adapt_mass, switch, foreground_start, update, first_update, capacity, early_end
    )


def search_flags(restart: np.ndarray, adapt_step_size: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(search_before, search_after)`` flags of the step-size search for a schedule whose
    transitions in ``restart`` change the mass matrix: the search runs before the first
    transition and before the transition following each change (so that the warm-up program
    holds one search, next to the kernel step). A change at the last transition can only be
    followed by a search after it (``search_after``, all false otherwise)."""
    n = len(restart)
    before = np.zeros(n, bool)
    after = np.zeros(n, bool)
    if adapt_step_size and n > 0:
        before[0] = True
        before[1:] = restart[:-1]
        after[-1] = restart[-1]
    return before, after
