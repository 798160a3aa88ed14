"""The command language: grammar, validation, completion and how each command acts on a Runner."""
