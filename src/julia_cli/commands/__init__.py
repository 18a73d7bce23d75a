"""One module per noun; each owns a ``JuliaTyper`` sub-app."""
