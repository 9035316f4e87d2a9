"""The ``skjar`` command line: a thin shell over the public functions, one module per command group."""
