"""``python -m {{ cookiecutter.package_name }}`` runs the service's command line."""

from .cli import main

if __name__ == "__main__":
    main()
