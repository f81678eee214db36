"""One event-driven layer (the core contract's steps 1-5): delta detector, fan-out address
generator, accumulator unit, sparse max pool, and the engine that chains them."""
