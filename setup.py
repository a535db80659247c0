# cffi_modules is a setup() keyword that pyproject.toml cannot express; everything else lives in pyproject.toml.
from setuptools import setup

setup(cffi_modules=["csrc/build_helper.py:ffibuilder"])
