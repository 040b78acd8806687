"""Maps the top-level ``assets/`` folder into the package as ``speechmapper_plugin.assets``.

Everything else lives in ``pyproject.toml``; this file exists only because the
package mapping cannot be combined with package discovery there.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(
        include=["speechmapper_plugin", "speechmapper_plugin.*", "recipes", "recipes.*"]
    )
    + ["speechmapper_plugin.assets"],
    package_dir={"speechmapper_plugin.assets": "assets"},
)
