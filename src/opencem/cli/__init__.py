"""The command line: thin commands over the domain packages (see :mod:`.main`)."""
