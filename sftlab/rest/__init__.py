"""The FMC REST API of the lab's FMCs (docs/lab.md)."""
