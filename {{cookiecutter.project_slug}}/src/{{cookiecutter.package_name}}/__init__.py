"""{{ cookiecutter.project_slug }}: the service's package."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION_NAME = "{{ cookiecutter.project_slug }}"

try:
    __version__ = version(DISTRIBUTION_NAME)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
