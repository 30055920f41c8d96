"""Operations: CLI, embedded services, migrations, topic catalog, metrics."""
