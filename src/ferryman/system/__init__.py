"""The system the declared services make together, as tools read it: ``lint`` checks it against
the design rules, ``docs`` writes it as AsyncAPI 3.0 and draws its topology, ``schema check``
compares its models with the registry."""
