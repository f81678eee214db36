"""Board tops: the engine behind the host link (BoardCore), and the whole board with its PLL and
pins."""
