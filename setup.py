# cffi_modules is a setup() keyword that pyproject.toml cannot express; everything else lives in pyproject.toml.
# build_ext also compiles the per-task supervisor (csrc/supervisor.c), a plain executable installed next to the
# cffi helper as ctrpy/ctrpy-supervisor, for `pip install .` and `pip install -e .` alike.
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc"))
from build_supervisor import compile_supervisor  # noqa: E402


class BuildExtWithSupervisor(build_ext):
    def run(self) -> None:
        super().run()
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("ctrpy._helper")), "ctrpy-supervisor")
        compile_supervisor(target)

    def get_outputs(self) -> list:
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("ctrpy._helper")), "ctrpy-supervisor")
        return super().get_outputs() + [target]


setup(cffi_modules=["csrc/build_helper.py:ffibuilder"], cmdclass={"build_ext": BuildExtWithSupervisor})
