"""The package version, in one place: ``embtune.__version__`` and the files embtune writes read it from here."""

__version__ = "0.1.0"
