# cffi_modules is a setup() keyword that pyproject.toml cannot express; everything else lives in pyproject.toml.
# build_ext also compiles the per-task supervisor (csrc/supervisor.c) and `run --init`'s static init (csrc/init.c),
# plain executables installed next to the cffi helper as ctrpy/ctrpy-supervisor and ctrpy/ctrpy-init, for
# `pip install .` and `pip install -e .` alike.
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc"))
from build_supervisor import compile_init, compile_supervisor  # noqa: E402


class BuildExtWithSupervisor(build_ext):
    def _target(self, name: str) -> str:
        return os.path.join(os.path.dirname(self.get_ext_fullpath("ctrpy._helper")), name)

    def run(self) -> None:
        super().run()
        compile_supervisor(self._target("ctrpy-supervisor"))
        compile_init(self._target("ctrpy-init"))

    def get_outputs(self) -> list:
        return super().get_outputs() + [self._target("ctrpy-supervisor"), self._target("ctrpy-init")]


setup(cffi_modules=["csrc/build_helper.py:ffibuilder"], cmdclass={"build_ext": BuildExtWithSupervisor})
