"""Tasks as data: a YAML file per task (``spec``), its examples and splits (``data``), and the built-in sources'
downloads into the cache (``sources``). Imports only from the core."""
