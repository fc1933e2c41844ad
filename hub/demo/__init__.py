"""`hub demo`: the seed journeys as synthetic agency events, and the runner that shows what the hub holds."""
