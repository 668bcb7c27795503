# cython: language_level=3
"""Compiled kernels of the context prior's rows (Cython, built at install time): the backoff chain and both coded
rows of a batch of codes.

:class:`~.priors.Priors` builds, for every code the range coder sees, two integer weight rows (its block ``c // B``,
then its place ``c % B``). With numpy that took ~50 array operations per batch of at most 1024 codes, and the decoder,
which must make them one diagonal step at a time, spent most of its ~80 µs per step in per-operation overhead and in
gathers of whole rows. These kernels make a batch's rows in one pass over its codes instead. A :class:`Tables` holds
the stages' tables (made once per :class:`~.priors.Priors`, checked then), so a call hands over only its own codes.

**The same bits as the numpy code they replaced** (the bitstream depends on them): every element is
``static · post``, then ``+ counts · coef`` per stage in stage order, in float64 (C ``double``), the same IEEE
operations in the same order, never contracted into a fused multiply-add: ``setup.py`` compiles this module with
``-ffp-contract=off`` (gcc contracts by default where the target has FMA, e.g. aarch64) and never with
``-ffast-math`` or ``-march=native``; ``floor`` and ``+ 1`` are exact, and the row totals are sums of integers below
``2^53``, exact in any order. ``tests/test_entropy.py`` pins payload SHA-256s made by the numpy implementation.

**Bounds.** Indexing is unchecked here (``boundscheck(False)``, ``wraparound(False)``), so every index is either
checked first or made from tables checked when the :class:`Tables` is made (each stage's direct table points at its
rows, each cell index at a row of its cells, the shapes agree): a symbol's level, its two context codes (``0 .. K``,
``K`` = none), its block (``0 .. A - 1``) and a chain row handed back to :meth:`Tables.lo_rows`. Codes decoded from a
crafted payload are within the coder's alphabet, but a block times ``B`` plus a place can exceed ``K - 1`` when ``B``
does not divide ``K``, and such a code becomes a later symbol's context: the kernel raises ``ValueError`` (the
reader's :class:`~ml_audio_encoder.errors.CodecFileError`).

**Cost.** Importing this module loads one shared library (no compiler, no cache, nothing made per process).
"""

cimport cython
from libc.stdint cimport int32_t, int64_t, uint16_t
from libc.stdlib cimport free, malloc

import numpy as np

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define MLAE_PREFETCH(p) __builtin_prefetch((const void *)(p))
    #else
    #define MLAE_PREFETCH(p) ((void)(p))
    #endif
    """
    void _prefetch "MLAE_PREFETCH"(const void* p) noexcept  # a hint only: reads nothing, never faults

cdef enum:
    _AHEAD = 4  # lo_rows: how many symbols ahead the count rows are fetched

# stage kinds, in the order of priors.STAGES: which context a stage's table is keyed by
cdef enum:
    _PREV = 0
    _COARSE = 1
    _PAIR = 2
PREV, COARSE, PAIR = _PREV, _COARSE, _PAIR

# constants, not module variables (which the compiler would have to reload after every store into a row)
cdef extern from *:
    """
    #define MLAE_QUANT_SCALE 16777216.0  /* priors.QUANT_SCALE = 2^24 (w = floor(p * 2^24) + 1) */
    #define MLAE_CAP_NUM 11.0  /* priors.CAP: the largest weight of a row is at most 11/12 of the row */
    #define MLAE_CAP_DEN 12.0
    #define MLAE_EXACT 4503599627370496.0  /* 2^52: from here on every double is an integer */
    """
    const double QUANT_SCALE "MLAE_QUANT_SCALE"
    const double CAP_NUM "MLAE_CAP_NUM"
    const double CAP_DEN "MLAE_CAP_DEN"
    const double EXACT "MLAE_EXACT"

# the element types of the count tables (priors._exact_type: the smallest exact one) and of the cell indices
cdef enum:
    U16 = 0
    F32 = 1
    F64 = 2
    I32 = 3
    I64 = 4

_TYPES = {np.dtype(np.uint16): U16, np.dtype(np.float32): F32, np.dtype(np.float64): F64,
          np.dtype(np.int32): I32, np.dtype(np.int64): I64}


cdef struct Stage:
    int kind
    const int32_t* direct  # level · (K+1) + context -> row (one-code stages)
    const int64_t* keys  # sorted (pair stages)
    Py_ssize_t n_keys
    const double* denom  # per row, the missing-context row last
    const double* factor
    Py_ssize_t n_rows  # rows + 1
    const char* block_counts  # (n_rows, A), of type Tables.counts_type
    const char* cell_of  # (n_rows · A,) of type Tables.cell_of_type, each < n_cells
    const char* cells  # (n_cells, B), of type Tables.cells_type
    Py_ssize_t n_cells


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline Py_ssize_t _search(const int64_t* keys, Py_ssize_t n, int64_t key) noexcept:
    """The row of ``key`` in a sorted table (``n``, the missing-context row, where absent): the ``pair`` stage, whose
    context is too wide for a direct table."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < n and keys[lo] == key:
        return lo
    return n


ctypedef fused count_t:
    uint16_t
    float
    double


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _row(double* w, Py_ssize_t n, const double* static, double p, const count_t** counts,
                      const double* coefs, Py_ssize_t n_stages) noexcept:
    """One row, ``floor`` + 1 but not capped yet: per element ``static · p``, then ``+ counts_s · coef_s`` stage by
    stage (the counts widened to double: exact), one product and one sum each, kept in a register from the first
    operation to the last (the same operations as a pass per stage, in the same order)."""
    cdef Py_ssize_t j, s
    cdef double x
    for j in range(n):
        x = static[j] * p
        for s in range(n_stages):
            x = x + <double>counts[s][j] * coefs[s]
        w[j] = _floor(x) + 1.0


cdef inline void _make_row(double* w, Py_ssize_t n, const double* static, double p, const char** counts,
                           const double* coefs, Py_ssize_t n_stages, int kind) noexcept:
    """:func:`_row` for counts of type ``kind``, then :func:`_cap`: the row quantized as :func:`_quantize` does."""
    if kind == U16:
        _row(w, n, static, p, <const uint16_t**>counts, coefs, n_stages)
    elif kind == F32:
        _row(w, n, static, p, <const float**>counts, coefs, n_stages)
    else:
        _row(w, n, static, p, <const double**>counts, coefs, n_stages)
    _cap(w, n)


cdef inline double _floor(double x) noexcept:
    """``floor(x)``, the same double, without a call into libm (x86-64's baseline has no rounding instruction, and the
    call was a fifth of a row's time) and without a branch that depends on the value: below 2^52 in magnitude,
    truncation toward zero is exact and a non-integer below zero is one less (``t - 1.0`` or ``t - 0.0``, both
    exact); from 2^52 on (and for inf and NaN) ``x`` is its own floor. (Only ``-0.0`` becomes ``+0.0``, which the
    ``+ 1`` that follows makes the same ``1.0``.)"""
    cdef double t
    if -EXACT < x < EXACT:
        t = <double><int64_t>x
        return t - <double>(t > x)
    return x


@cython.boundscheck(False)
@cython.wraparound(False)
cdef void _cap(double* w, Py_ssize_t n) noexcept:
    """The second half of priors.quantize_scaled of one row (already ``floor(w) + 1``), in place: the largest weight
    capped at 11/12 of the row.

    The total and the largest weight are exact whatever the order (sums of integers below 2^53, a maximum), so they
    are taken over four interleaved partial sums and maxima: one serial chain of ``n`` dependent additions would be
    most of a row's time. The first of equal largest weights is the one capped, as with ``argmax``; only a row whose
    largest weight is above 11/12 of it changes, which is what the batch-wide shortcut of the numpy version decided
    too."""
    cdef Py_ssize_t j
    cdef double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0
    cdef double m0 = 0.0, m1 = 0.0, m2 = 0.0, m3 = 0.0
    cdef double total, top
    j = 0
    while j + 4 <= n:
        t0 += w[j]
        t1 += w[j + 1]
        t2 += w[j + 2]
        t3 += w[j + 3]
        m0 = max(m0, w[j])
        m1 = max(m1, w[j + 1])
        m2 = max(m2, w[j + 2])
        m3 = max(m3, w[j + 3])
        j += 4
    while j < n:
        t0 += w[j]
        m0 = max(m0, w[j])
        j += 1
    total = (t0 + t1) + (t2 + t3)
    top = max(max(m0, m1), max(m2, m3))
    if top * CAP_DEN > CAP_NUM * total:
        for j in range(n):
            if w[j] == top:
                w[j] = CAP_NUM * (total - top)
                break


cdef void _quantize(double* w, Py_ssize_t n) noexcept:
    """priors.quantize_scaled of one row, in place: ``floor(w) + 1``, the largest capped at 11/12 of the row."""
    cdef Py_ssize_t j
    for j in range(n):
        w[j] = _floor(w[j]) + 1.0
    _cap(w, n)


def quantize_row(double[::1] w not None):
    """:func:`_quantize` of one float64 row, in place (for tests: it must equal priors.quantize_scaled)."""
    if w.shape[0]:
        _quantize(&w[0], w.shape[0])


cdef const char* _pointer(object array, Py_ssize_t size, int kind, str what) except NULL:
    """The data of ``array`` (C-contiguous, ``size`` elements of type ``kind``; a 1-element stand-in when empty)."""
    if not array.flags.c_contiguous or _TYPES.get(array.dtype, -1) != kind or array.size != size:
        raise ValueError(f"{what}: a C-contiguous array of {size} elements of one type is needed")
    return <const char*><size_t>array.ctypes.data


cdef class Tables:
    """Every stage's coder tables, checked once: ``Tables(k, kinds, direct, keys, denom, factor, block_counts,
    cell_of, cells, static_hi, static_lo)``, one tuple element per stage for the per-stage tables: ``kinds`` (S,)
    each stage's :data:`PREV`/:data:`COARSE`/:data:`PAIR`, ``direct`` (int32, ``levels · (K+1)``: level · (K+1) +
    context -> row; ``None`` for pair stages), ``keys`` (int64, sorted), ``denom`` and ``factor`` (float64, per row,
    the missing-context row last), ``block_counts`` ``(rows + 1, A)``, ``cell_of`` ``((rows + 1) · A,)`` (row · A +
    block -> cell), ``cells`` ``(cells, B)`` (the last cell all zeros). The count tables of all stages are of one
    type (uint16, float32 or float64), the cell indices of int32 or int64. ``static_hi`` ``(Q, A)``: each level's
    static probability of each block times 2^24; ``static_lo`` ``(Q, A, B)``: each code's (zero past ``K``).

    The arrays are held (not copied) and must not change."""

    cdef Stage* stages
    # scratch of n_stages, the count rows of one symbol and their coefficients: a call holds the GIL from start to
    # end (no nogil, no Python inside the loops), so one scratch serves every thread
    cdef const char** counts
    cdef double* coefs
    cdef Py_ssize_t n_stages, n_levels, a_blocks, b_size, k
    cdef int counts_type, cell_of_type, cells_type
    cdef const double[:, ::1] static_hi
    cdef const double[:, :, ::1] static_lo
    cdef object _held

    def __cinit__(self):
        self.stages = NULL
        self.counts = NULL
        self.coefs = NULL

    def __dealloc__(self):
        free(self.stages)
        free(self.counts)
        free(self.coefs)

    def __init__(self, Py_ssize_t k, kinds, direct, keys, denom, factor, block_counts, cell_of, cells,
                 static_hi, static_lo):
        cdef Py_ssize_t s, n_stages = len(kinds), i, size, rows
        cdef Stage* st
        cdef const int32_t* d
        cdef const int32_t* c32
        cdef const int64_t* c64
        if not (len(direct) == len(keys) == len(denom) == len(factor) == len(block_counts) == len(cell_of)
                == len(cells) == n_stages):
            raise ValueError("the stage tables are of different lengths")
        self.static_hi = static_hi
        self.static_lo = static_lo
        self.n_levels, self.a_blocks = self.static_hi.shape[0], self.static_hi.shape[1]
        self.b_size = self.static_lo.shape[2]
        if (self.static_lo.shape[0] != self.n_levels or self.static_lo.shape[1] != self.a_blocks or k < 1
                or self.a_blocks < 1 or self.b_size < 1):
            raise ValueError("the static rows disagree")
        self.k = k
        arrays = [np.ascontiguousarray(x) for x in (*block_counts, *cells, *cell_of)]
        self.counts_type = _TYPES.get(arrays[0].dtype, -1) if n_stages else U16
        self.cells_type = _TYPES.get(arrays[n_stages].dtype, -1) if n_stages else U16
        self.cell_of_type = _TYPES.get(arrays[2 * n_stages].dtype, -1) if n_stages else I32
        if (self.counts_type not in (U16, F32, F64) or self.cells_type not in (U16, F32, F64)
                or self.cell_of_type not in (I32, I64)):
            raise ValueError("the count tables are of an unexpected type")
        self._held = []
        self.stages = <Stage*>malloc(max(1, n_stages) * sizeof(Stage))
        self.counts = <const char**>malloc(max(1, n_stages) * sizeof(char*))
        self.coefs = <double*>malloc(max(1, n_stages) * sizeof(double))
        if self.stages == NULL or self.counts == NULL or self.coefs == NULL:
            raise MemoryError()
        self.n_stages = n_stages
        for s in range(n_stages):
            st = &self.stages[s]
            st.kind = int(kinds[s])
            if st.kind not in (PREV, COARSE, PAIR):
                raise ValueError("unknown stage kind")
            den, fac = np.asarray(denom[s]), np.asarray(factor[s])
            rows = den.size
            if rows < 1:
                raise ValueError("a stage has no missing-context row")
            st.n_rows = rows
            st.denom = <const double*>_pointer(den, rows, F64, "denom")
            st.factor = <const double*>_pointer(fac, rows, F64, "factor")
            key = np.asarray(keys[s])
            st.n_keys = key.size
            st.keys = <const int64_t*>_pointer(key, key.size, I64, "keys") if key.size else NULL
            if st.kind == PAIR:
                if st.n_keys != rows - 1:
                    raise ValueError("a pair stage's keys and rows disagree")
                st.direct = NULL
            else:
                dir_ = np.asarray(direct[s])
                size = self.n_levels * (k + 1)
                st.direct = <const int32_t*>_pointer(dir_, size, I32, "direct")
                d = st.direct
                for i in range(size):
                    if d[i] < 0 or d[i] >= rows:
                        raise ValueError("a direct table points past its rows")
            bc, cel, cof = arrays[s], arrays[n_stages + s], arrays[2 * n_stages + s]
            st.block_counts = _pointer(bc, rows * self.a_blocks, self.counts_type, "block_counts")
            if cel.ndim != 2 or cel.shape[1] != self.b_size or cel.shape[0] < 1:
                raise ValueError("cells: (cells, B) needed")
            st.n_cells = cel.shape[0]
            st.cells = _pointer(cel, cel.size, self.cells_type, "cells")
            size = rows * self.a_blocks
            st.cell_of = _pointer(cof, size, self.cell_of_type, "cell_of")
            if self.cell_of_type == I32:
                c32 = <const int32_t*>st.cell_of
                for i in range(size):
                    if c32[i] < 0 or c32[i] >= st.n_cells:
                        raise ValueError("a cell index is out of range")
            else:
                c64 = <const int64_t*>st.cell_of
                for i in range(size):
                    if c64[i] < 0 or c64[i] >= st.n_cells:
                        raise ValueError("a cell index is out of range")
            self._held.extend([den, fac, key, bc, cel, cof] + ([] if st.kind == PAIR else [dir_]))

    @property
    def n_blocks(self):
        return self.a_blocks

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def chain_hi(self, const int64_t[::1] levels not None, const int64_t[::1] prev not None,
                 const int64_t[::1] coarse not None):
        """The backoff chain of ``n`` symbols and their block rows, in one pass.

        Returns ``(rows (S, n), coefs (S, n), post (n,), hi (n, A))``: each symbol's row in each stage, that stage's
        coefficient times 2^24 (the product of the later stages' factors over the row's denominator), the static
        part's factor, and the quantized block weights. ``ValueError`` if a level or context code is out of range."""
        cdef Py_ssize_t n = levels.shape[0], n_stages = self.n_stages, a_blocks = self.a_blocks
        cdef Py_ssize_t i, j, s, r
        cdef int64_t level, a, b, k = self.k, k1 = self.k + 1
        cdef double p
        cdef Stage* st
        cdef size_t row_bytes = a_blocks * (2 if self.counts_type == U16 else 4 if self.counts_type == F32 else 8)
        if prev.shape[0] != n or coarse.shape[0] != n:
            raise ValueError("the levels and contexts are of different lengths")
        rows_ = np.empty((n_stages, n), np.int64)
        coefs_ = np.empty((n_stages, n), np.float64)
        post_ = np.empty(n, np.float64)
        hi_ = np.empty((n, a_blocks), np.float64)
        cdef int64_t[:, ::1] rows = rows_
        cdef double[:, ::1] coefs = coefs_
        cdef double[::1] post = post_
        cdef double[:, ::1] hi = hi_
        for i in range(n):
            level, a, b = levels[i], prev[i], coarse[i]
            if level < 0 or level >= self.n_levels or a < 0 or a > k or b < 0 or b > k:
                raise ValueError("a symbol's level or context code is out of range")
            for s in range(n_stages):
                st = &self.stages[s]
                if st.kind == _PAIR:
                    rows[s, i] = _search(st.keys, st.n_keys, (level * k1 + a) * k1 + b)
                else:  # checked at construction: below st.n_rows
                    rows[s, i] = st.direct[level * k1 + (a if st.kind == _PREV else b)]
            # the factor of each stage's counts is the product of the factors of the stages after it
            p = 1.0
            for s in range(n_stages - 1, -1, -1):
                r = rows[s, i]
                coefs[s, i] = p * QUANT_SCALE / self.stages[s].denom[r]  # (post · 2^24) / denom: 2^24 is exact
                p *= self.stages[s].factor[r]
            post[i] = p
            for s in range(n_stages):
                self.counts[s] = self.stages[s].block_counts + rows[s, i] * row_bytes
                self.coefs[s] = coefs[s, i]
            # per element: static, then stage by stage (the numpy order)
            _make_row(&hi[i, 0], a_blocks, &self.static_hi[level, 0], p, self.counts, self.coefs, n_stages,
                      self.counts_type)
        return rows_, coefs_, post_, hi_

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def lo_rows(self, const int64_t[::1] levels not None, const int64_t[::1] blocks not None,
                const int64_t[:, ::1] rows not None, const double[:, ::1] coefs not None,
                const double[::1] post not None):
        """Each symbol's quantized weights of the ``B`` codes of its block ``blocks[i]`` (from :meth:`chain_hi`'s
        rows, coefficients and post factors). ``ValueError`` if a level, block or chain row is out of range."""
        cdef Py_ssize_t n = levels.shape[0], n_stages = self.n_stages, a_blocks = self.a_blocks, b_size = self.b_size
        cdef Py_ssize_t i, j, s, cell
        cdef int64_t level, h, r
        cdef Stage* st
        cdef size_t row_bytes = b_size * (2 if self.cells_type == U16 else 4 if self.cells_type == F32 else 8)
        if (blocks.shape[0] != n or rows.shape[0] != n_stages or rows.shape[1] != n or coefs.shape[0] != n_stages
                or coefs.shape[1] != n or post.shape[0] != n):
            raise ValueError("the chain and the blocks are of different lengths")
        lo_ = np.empty((n, b_size), np.float64)
        cdef double[:, ::1] lo = lo_
        if n == 0:
            return lo_
        # first every index is checked and each symbol's count rows found; then the rows are made, the count rows of
        # a symbol a few places ahead fetched into the cache meanwhile (they are spread over ~45 MB of cells)
        cdef const char** found = <const char**>malloc(n * max(1, n_stages) * sizeof(char*))
        if found == NULL:
            raise MemoryError()
        try:
            for i in range(n):
                level, h = levels[i], blocks[i]
                if level < 0 or level >= self.n_levels or h < 0 or h >= a_blocks:
                    raise ValueError("a symbol's level or block is out of range")
                for s in range(n_stages):
                    st = &self.stages[s]
                    r = rows[s, i]
                    if r < 0 or r >= st.n_rows:
                        raise ValueError("a chain row is out of range")
                    if self.cell_of_type == I32:  # cell indices are checked at construction: rows of st.cells
                        cell = (<const int32_t*>st.cell_of)[r * a_blocks + h]
                    else:
                        cell = (<const int64_t*>st.cell_of)[r * a_blocks + h]
                    found[i * n_stages + s] = st.cells + cell * row_bytes
            for i in range(n):
                if i + _AHEAD < n:
                    for s in range(n_stages):
                        _prefetch(found[(i + _AHEAD) * n_stages + s])
                        _prefetch(found[(i + _AHEAD) * n_stages + s] + row_bytes - 1)
                for s in range(n_stages):
                    self.coefs[s] = coefs[s, i]
                # the same order per element as the block rows: static, then stage by stage
                _make_row(&lo[i, 0], b_size, &self.static_lo[levels[i], blocks[i], 0], post[i],
                          found + i * n_stages, self.coefs, n_stages, self.cells_type)
        finally:
            free(found)
        return lo_
