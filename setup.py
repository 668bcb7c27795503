"""The compiled kernels of the entropy coder (everything else is declared in setup.cfg).

``-ffp-contract=off``: the context prior's rows must be the same bits on every machine (they are the bitstream), so
no multiply-add may be fused (gcc fuses by default where the target has FMA); never ``-ffast-math`` or
``-march=native``. See ``ml_audio_encoder/runtime/entropy/_kernels.pyx``."""

import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

FLAGS = ["/O2", "/fp:precise"] if sys.platform == "win32" else ["-O2", "-ffp-contract=off"]

setup(ext_modules=cythonize([Extension("ml_audio_encoder.runtime.entropy._kernels",
                                       ["ml_audio_encoder/runtime/entropy/_kernels.pyx"], extra_compile_args=FLAGS)],
                            compiler_directives={"language_level": 3}))
