"""Training the codec: losses, discriminators, the GAN train step for ``model.fit``, callbacks, configs, data."""


def keep_freed_memory():
    """Keep memory that a training step frees in glibc's heap instead of returning it to the kernel.

    TensorFlow allocates and frees the same large buffers every step; with glibc's defaults they are mmap'ed and
    unmapped (or the heap trimmed) each time and faulted in again, zero-filled: ~77,000 minor page faults and 25-30 %
    of a ``fast_24khz`` step's CPU time in kernel (docs/training_on_cpu.md). A 1 GiB trim threshold and glibc's
    largest mmap threshold (32 MiB) remove most of it. No-op where glibc is not the C library.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
