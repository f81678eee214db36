"""The board's side of the host link: UART, and the protocol engine between bytes and the layer
engine."""
