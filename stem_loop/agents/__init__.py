"""RunEngine subscribers of the loop: inference, energetics and mapping agents."""
