"""From-scratch pieces of the course's foundations (matrix multiplication, hand-written backprop): pure torch."""
