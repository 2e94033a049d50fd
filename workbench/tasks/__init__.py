"""Tasks as data: a YAML file per task (``spec``), the source its records come from (``source``: its examples,
``sources.examples``, or the guide's arithmetic generator, ``sources.arithmetic``), its records and prompt sets
(``data``), and the built-in sources' downloads into the cache (``sources``). Imports only from the core."""
