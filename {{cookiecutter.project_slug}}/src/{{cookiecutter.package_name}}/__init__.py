"""{{ cookiecutter.project_slug }}: the service's package."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION_NAME = "{{ cookiecutter.project_slug }}"

# The version of the pychassis template this project was generated from, or last updated
# to with `cruft update` (which rewrites this line); `/info` reports it.
TEMPLATE_VERSION = "{{ cookiecutter._template_version }}"

try:
    __version__ = version(DISTRIBUTION_NAME)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
