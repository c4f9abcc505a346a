"""The ``ddhpose`` subcommands, one module each with ``add_arguments(parser)`` and ``run(args)``
(registered in :mod:`ddhpose.cli`)."""
